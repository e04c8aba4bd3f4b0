"""Per-portal settings: the saved policy, the observed mode with its change history, the sweep."""

from __future__ import annotations

import datetime as dt

import pytest

from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from b24app.store.installations import InstallationStore
from b24app.store.portal_settings import PortalSettings


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_a_portal_without_settings_has_no_policy_mode_or_sweep(engine) -> None:
    settings = PortalSettings(engine)
    assert settings.policy_data("m1") is None
    assert settings.observed_mode("m1") == (None, None)
    assert settings.last_swept("m1") is None


def test_the_saved_policy_comes_back_with_who_saved_it(engine) -> None:
    settings = PortalSettings(engine)
    settings.save_policy("m1", {"client": "contact", "pipeline": 0}, by="user 1")
    settings.save_policy("m1", {"client": "both", "pipeline": 3}, by="user 7")
    assert settings.policy_data("m1") == {"client": "both", "pipeline": 3}
    by, at = settings.policy_saved_by("m1")
    assert by == "user 7" and at is not None and at.tzinfo is not None
    assert settings.policy_data("m2") is None


def test_a_mode_change_is_returned_once_and_written_to_the_history(engine) -> None:
    settings = PortalSettings(engine)
    assert settings.record_mode("m1", "classic") is None  # first reading: nothing to compare
    assert settings.record_mode("m1", "classic") is None
    assert settings.record_mode("m1", "simple") == "classic"
    assert settings.observed_mode("m1")[0] == "simple"
    history = InstallationStore(engine, Cipher(Cipher.generate_key())).history("m1")
    assert [(h.event, h.detail) for h in history] == [("mode_changed", "classic -> simple")]


def test_sweep_time_and_purge(engine) -> None:
    settings = PortalSettings(engine)
    at = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    settings.mark_swept("m1", at)
    settings.save_policy("m1", {"client": "company"}, by="1")
    assert settings.last_swept("m1") == at
    settings.save_policy("m2", {"client": "contact"}, by="1")  # never swept
    assert settings.swept() == {"m1": at}  # every portal's at once, for the worker's tick
    settings.purge("m1")
    assert settings.policy_data("m1") is None and settings.last_swept("m1") is None
    assert settings.swept() == {}
