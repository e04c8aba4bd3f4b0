"""Fixtures for the background-work tests: sandbox portals and a SQLite journal (shared with the
conversion tests)."""

from __future__ import annotations

from tests.conversion.conftest import database_url, journal, make_sandbox

__all__ = ["database_url", "journal", "make_sandbox"]
