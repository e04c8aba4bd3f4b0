"""Persistence: SQLAlchemy tables for installations and the conversion journal, with migrations."""
