"""b24app.events without the web: the bracket form, the Event, verify_event, and that no input
makes the parser raise anything but MalformedEvent."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from b24app.events import (
    MAX_BODY,
    Event,
    EventRejected,
    MalformedEvent,
    nest_form,
    parse_event,
    verify_event,
)
from b24app.store import installations as inst
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine, migrate
from tests.scenarios.market_app import DOC_APP_TOKEN, DOC_MEMBER, body, pairs


def test_every_documented_event_parses() -> None:
    add = parse_event(body("ONCRMLEADADD.form"))
    assert (add.name, add.member_id, add.lead_id, add.ts, add.handler_id) == (
        "ONCRMLEADADD",
        DOC_MEMBER,
        1000983,
        1742807175,
        707,
    )
    assert add.application_token == DOC_APP_TOKEN
    assert add.domain == "some-domain.bitrix24.com"
    assert parse_event(body("ONCRMLEADUPDATE.form")).lead_id == 1000983
    uninstall = parse_event(body("ONAPPUNINSTALL.form"))
    assert uninstall.clean and uninstall.lead_id is None
    install = parse_event(body("ONAPPINSTALL.form"))
    assert install.data["LANGUAGE_ID"] == "de"
    assert install.auth_value("refresh_token") == "4s386p3q0tr8dy89xvmt96234v3dljg8"


def test_every_input_shape_gives_the_same_event() -> None:
    raw = body("ONCRMLEADADD.form")
    expected = parse_event(raw)
    assert parse_event(raw.decode()) == expected
    assert parse_event(pairs("ONCRMLEADADD.form")) == expected
    assert parse_event(dict(pairs("ONCRMLEADADD.form"))) == expected
    assert parse_event(MultiDict(pairs("ONCRMLEADADD.form"))) == expected


def test_the_tokens_stay_out_of_the_repr() -> None:
    event = parse_event(body("ONAPPINSTALL.form"))
    text = repr(event)
    assert DOC_APP_TOKEN not in text
    assert "s6p6eclrvim6da22ft9ch94ekreb52lv" not in text  # access_token
    assert "4s386p3q0tr8dy89xvmt96234v3dljg8" not in text  # refresh_token


def test_brackets_nest_and_empty_brackets_append() -> None:
    tree = nest_form(
        [("data[FIELDS][ID]", "5"), ("data[PHONE][]", "1"), ("data[PHONE][]", "2"), ("ts", "9")]
    )
    assert tree == {"data": {"FIELDS": {"ID": "5"}, "PHONE": {"0": "1", "1": "2"}}, "ts": "9"}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ("", "'event'"),
        ("event=ONCRMLEADADD", "'auth'"),
        ("event=ONCRMLEADADD&auth=x", "'auth'"),
        ("event=ONCRMLEADADD&auth[member_id]=m1", "data[FIELDS][ID]"),
        ("event=ONCRMLEADADD&auth[member_id]=m1&data[FIELDS][ID]=abc", "data[FIELDS][ID]"),
        ("event=ONCRMLEADADD&auth[member_id]=m1&data[FIELDS][ID]=0", "positive"),
        ("event=ONCRMLEADADD&auth[member_id]=m1&data[FIELDS][ID]=-4", "data[FIELDS][ID]"),
        ("event=ON CRM&auth[member_id]=m1", "'event'"),
        ("event=ONAPPUNINSTALL&auth[member_id]=a/b", "auth[member_id]"),
        ("event=ONAPPUNINSTALL&auth[member_id]=m1&auth[member_id]=m2", "repeated"),
        ("event=ONAPPUNINSTALL&auth[member_id]=m1&auth[member_id][x]=m2", "conflicts"),
        ("event=ONAPPUNINSTALL&auth[member_id]=m1&data=x", "'data'"),
        ("event=ONAPPUNINSTALL&auth[member_id]=m1&ts=soon", "ts"),
        ("event=X&auth[member_id]=m1&auth[application_token][x]=1", "application_token"),
        ("event=X&a[b=1", "malformed field name"),
        ("event=X&[a]=1", "malformed field name"),
        ("event=X&a]b[=1", "malformed field name"),
        ("event=X&a[1][2][3][4][5][6]=1", "deeper"),
        ('{"event": "ONCRMLEADADD"}', "'event'"),
    ],
)
def test_malformed_forms_name_the_problem(form: str, message: str) -> None:
    with pytest.raises(MalformedEvent, match=None) as caught:
        parse_event(form)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        b"event=ONCRMLEADADD&auth%5Bmember_id%5D=%FF%FE",
        b"\xff\xfe" * 10,
        b"a=1&" * 201,
        b"x" * (MAX_BODY + 1),
    ],
)
def test_undecodable_or_oversized_bodies_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(raw)


def test_values_that_are_not_text_are_malformed() -> None:
    with pytest.raises(MalformedEvent):
        parse_event([("event", "X"), ("auth[member_id]", 5)])
    with pytest.raises(MalformedEvent):
        parse_event([("event",)])
    with pytest.raises(MalformedEvent):
        parse_event(42)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_an_event_or_malformed(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except MalformedEvent:
        return
    assert isinstance(event, Event)


_KEYS = st.sampled_from(
    [
        "event",
        "auth[member_id]",
        "auth[application_token]",
        "data[FIELDS][ID]",
        "data[CLEAN]",
        "ts",
        "auth",
        "data",
        "data[]",
        "auth[]",
        "data[FIELDS]",
        "a[b][c]",
        "[",
        "]",
        "event_handler_id",
    ]
) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEYS, st.text(max_size=20)), max_size=12))
def test_any_pairs_give_an_event_or_malformed(form: list[tuple[str, str]]) -> None:
    try:
        event = parse_event(form)
    except MalformedEvent:
        return
    assert event.member_id and event.name


# -- verify_event -------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> inst.InstallationStore:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    migrate(url)
    store = inst.InstallationStore(make_engine(url), Cipher(Cipher.generate_key()))
    store.save_installation(
        inst.Installation(
            member_id=DOC_MEMBER,
            domain="some-domain.bitrix24.com",
            client_endpoint="https://some-domain.bitrix24.com/rest/",
            access_token="a" * 32,
            refresh_token="r" * 32,
            application_token=DOC_APP_TOKEN,
        )
    )
    return store


def _event(token: str = DOC_APP_TOKEN, member_id: str = DOC_MEMBER) -> Event:
    return Event(name="ONCRMLEADADD", member_id=member_id, application_token=token, lead_id=1)


def test_verify_accepts_the_stored_token_compared_in_constant_time(store, monkeypatch) -> None:
    compared = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        compared.append(True)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_event(store, _event()).member_id == DOC_MEMBER
    assert compared == [True]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(token=""), "missing_token"),
        (_event(token=DOC_APP_TOKEN[:-1] + "0"), "token_mismatch"),
        (_event(token=DOC_APP_TOKEN + "0"), "token_mismatch"),
        (_event(member_id="b" * 32), "unknown_portal"),
    ],
)
def test_verify_rejects(store, event: Event, reason: str) -> None:
    with pytest.raises(EventRejected) as caught:
        verify_event(store, event)
    assert caught.value.reason == reason
    assert DOC_APP_TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [inst.UNINSTALLED, inst.DELETED])
def test_verify_rejects_a_portal_that_is_gone(store, status: str) -> None:
    store.mark_status(DOC_MEMBER, status)
    with pytest.raises(EventRejected) as caught:
        verify_event(store, _event())
    assert caught.value.reason == "uninstalled"


@pytest.mark.parametrize("status", [inst.REINSTALL_NEEDED, inst.PAYMENT_REQUIRED])
def test_verify_accepts_a_portal_that_still_has_the_app(store, status: str) -> None:
    store.mark_status(DOC_MEMBER, status)
    assert verify_event(store, _event()).status == status
