"""Page tokens: signed, short-lived, bound to the secret key, rotation-friendly."""

from __future__ import annotations

import pytest

from b24app.config import Settings
from b24app.errors import ConfigError
from b24app.pagetoken import PageTokenError, PageTokens, PageUser
from b24app.store.crypto import Cipher

USER = PageUser(member_id="m1", user_id=2, is_admin=False, lang="br")


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_round_trips_and_expires_after_max_age() -> None:
    clock = Clock()
    tokens = PageTokens(Cipher.generate_key(), max_age=60, clock=clock)
    token = tokens.issue(USER)
    assert tokens.verify(token) == USER
    clock.now += 60
    assert tokens.verify(token) == USER
    clock.now += 1
    with pytest.raises(PageTokenError, match="expired") as caught:
        tokens.verify(token)
    assert caught.value.expired


@pytest.mark.parametrize("bad", [None, "", "abc", "x.y.z"])
def test_missing_or_garbage_tokens_are_refused(bad: str | None) -> None:
    with pytest.raises(PageTokenError) as caught:
        PageTokens(Cipher.generate_key()).verify(bad)
    assert not caught.value.expired


def test_tampering_or_another_key_is_refused() -> None:
    tokens = PageTokens(Cipher.generate_key())
    token = tokens.issue(USER)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(PageTokenError, match="not valid"):
        tokens.verify(flipped)
    with pytest.raises(PageTokenError, match="not valid"):
        PageTokens(Cipher.generate_key()).verify(token)


def test_rotation_new_key_first_still_accepts_old_tokens() -> None:
    old, new = Cipher.generate_key(), Cipher.generate_key()
    token = PageTokens(old).issue(USER)
    assert PageTokens(f"{new},{old}").verify(token) == USER
    fresh = PageTokens(f"{new},{old}").issue(USER)
    assert PageTokens(new).verify(fresh) == USER


def test_the_payload_is_checked_and_malformed_languages_fall_back() -> None:
    assert PageUser.from_dict({"m": "m", "u": 1, "a": True, "l": "de"}).lang == "de"
    for bad in ("<b>", "deu", "", 7, None):
        assert PageUser.from_dict({"m": "m", "u": 1, "a": True, "l": bad}).lang == "en"
    with pytest.raises(PageTokenError):
        PageUser.from_dict({"m": "", "u": 1})
    with pytest.raises(PageTokenError):
        PageUser.from_dict(["m", 1])


def test_settings_without_a_secret_key_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="B24APP_SECRET_KEY"):
        PageTokens.from_settings(Settings())
