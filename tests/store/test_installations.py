"""The installations store: one row per portal, secrets encrypted, a history without secrets."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from b24app.config import Settings
from b24app.errors import ConfigError, UsageError
from b24app.store import installations as inst
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


def installation(**changes) -> inst.Installation:
    values = dict(
        member_id=MEMBER,
        domain="portal.bitrix24.com",
        client_endpoint="https://portal.bitrix24.com/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        access_token="acc-111",
        refresh_token="ref-222",
        application_token="apt-333",
        expires_at=1_780_319_382,
        scope="crm,user",
    )
    values.update(changes)
    return inst.Installation(**values)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate(url)
    return url


@pytest.fixture
def key() -> str:
    return Cipher.generate_key()


@pytest.fixture
def store(url, key) -> inst.InstallationStore:
    return inst.InstallationStore(make_engine(url), Cipher(key))


def test_save_and_read_back(store):
    saved = store.save_installation(installation())
    assert saved.member_id == MEMBER
    assert (saved.access_token, saved.refresh_token, saved.application_token) == (
        "acc-111",
        "ref-222",
        "apt-333",
    )
    assert (saved.status, saved.scope, saved.expires_at) == ("active", "crm,user", 1_780_319_382)
    assert saved.installed_at.tzinfo is not None
    assert store.get_installation(MEMBER) == saved
    assert store.get_installation("nope") is None
    for key in (MEMBER, "portal.bitrix24.com", "https://portal.bitrix24.com/rest/"):
        assert store.find_installation(key) == saved
    assert store.find_installation("other.bitrix24.com") is None


def test_secrets_are_encrypted_at_rest_and_absent_from_reprs(store):
    saved = store.save_installation(installation())
    with store.engine.connect() as conn:
        row = conn.execute(select(inst.installations)).one()
    raw = " ".join(str(v) for v in row)
    for secret in ("acc-111", "ref-222", "apt-333"):
        assert secret not in raw
        assert secret not in repr(saved)
    assert row.access_token.startswith("gAAAA")  # a Fernet token


def test_a_wrong_key_is_a_config_error_and_old_keys_still_decrypt(url, key, store):
    store.save_installation(installation())
    stranger = inst.InstallationStore(make_engine(url), Cipher(Cipher.generate_key()))
    with pytest.raises(ConfigError, match="B24APP_SECRET_KEY cannot decrypt"):
        stranger.get_installation(MEMBER)
    rotated = inst.InstallationStore(make_engine(url), Cipher(f"{Cipher.generate_key()},{key}"))
    assert rotated.get_installation(MEMBER).access_token == "acc-111"


def test_cipher_settings():
    with pytest.raises(ConfigError, match="B24APP_SECRET_KEY"):
        Cipher.from_settings(Settings())
    with pytest.raises(ConfigError, match="Fernet keys"):
        Cipher("not-a-key")
    assert repr(Cipher.from_settings(Settings(secret_key=Cipher.generate_key()))) == "Cipher(***)"


def test_reinstall_reactivates_and_keeps_secrets_it_was_not_given(store):
    store.save_installation(installation())
    store.mark_status(MEMBER, inst.REINSTALL_NEEDED, reason="invalid_grant")
    again = store.save_installation(
        installation(access_token="acc-9", refresh_token="ref-9", application_token="")
    )
    assert again.status == inst.ACTIVE
    assert (again.access_token, again.application_token) == ("acc-9", "apt-333")
    assert [h.event for h in store.history(MEMBER)] == ["installed", "status", "reinstalled"]
    assert store.history(MEMBER)[2].detail == "portal.bitrix24.com (was reinstall_needed)"


def test_statuses_and_listing(store):
    store.save_installation(installation())
    store.save_installation(
        installation(
            member_id="m2", domain="b.bitrix24.com", client_endpoint="https://b.bitrix24.com/rest/"
        )
    )
    store.mark_status("m2", inst.PAYMENT_REQUIRED, reason="PAYMENT_REQUIRED")
    assert [i.member_id for i in store.list_installations()] == ["m2", MEMBER]
    assert [i.member_id for i in store.list_installations(status=inst.ACTIVE)] == [MEMBER]
    assert not store.get_installation("m2").active
    with pytest.raises(UsageError, match="unknown installation status"):
        store.mark_status(MEMBER, "sleepy")
    store.mark_status("missing", inst.DELETED)  # nothing to mark: no error, no history
    assert store.history("missing") == []


def test_rotation_and_moves_are_recorded_without_secrets(store):
    store.save_installation(installation())
    rotated = store.rotate_tokens(
        MEMBER,
        access_token="acc-2",
        refresh_token="ref-2",
        expires_at=1_780_400_000,
        client_endpoint="https://new.bitrix24.com/rest/",
    )
    assert (rotated.access_token, rotated.refresh_token) == ("acc-2", "ref-2")
    assert (rotated.domain, rotated.client_endpoint) == (
        "new.bitrix24.com",
        "https://new.bitrix24.com/rest/",
    )
    assert rotated.scope == "crm,user"  # kept when the grant does not say
    history = store.history(MEMBER)
    assert [h.event for h in history] == ["installed", "rotated", "moved"]
    text = " ".join(h.detail for h in history)
    for secret in ("acc-", "ref-", "apt-"):
        assert secret not in text
    with pytest.raises(UsageError, match="no installation stored"):
        store.rotate_tokens("missing", access_token="a", refresh_token="b", expires_at=None)


def test_uninstall_forgets_tokens_but_still_verifies_the_application_token(store):
    store.save_installation(installation())
    assert store.verify_application_token(MEMBER, "apt-333")
    assert not store.verify_application_token(MEMBER, "apt-334")
    assert not store.verify_application_token("missing", "apt-333")
    store.mark_uninstalled(MEMBER, clean=True)
    gone = store.get_installation(MEMBER)
    assert (gone.status, gone.access_token, gone.refresh_token) == (inst.UNINSTALLED, "", "")
    assert store.verify_application_token(MEMBER, "apt-333")
    assert store.history(MEMBER)[-1].event == "uninstalled"


def test_migrations_apply_twice_and_create_both_tables(url):
    migrate(url)
    from sqlalchemy import inspect

    tables = set(inspect(make_engine(url)).get_table_names())
    assert {"installations", "installation_history"} <= tables
