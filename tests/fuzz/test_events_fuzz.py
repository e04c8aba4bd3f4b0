"""Property-based fuzzing of the bracket-form parser and of `/events` (hypothesis).

Properties:

* `parse_event` on any bytes, text or (name, value) pairs returns an Event or raises
  MalformedEvent - never another exception; a well-formed delivery parses to what was sent.
* `/events` (the Flask app with a real SQLite store, the sandbox as the OAuth server, a recording
  job queue) answers any malformed body or forged delivery - wrong, missing or another portal's
  application_token, unknown or uninstalled portal, forged ONAPPINSTALL - with a 4xx, never a 5xx,
  and changes nothing: every database row and the job queue stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, select

from b24app.events import Event, MalformedEvent, parse_event
from b24app.store import installations as inst
from handlers import create_app
from sandbox import Sandbox
from tests.rest.sandbox_app import install_into
from tests.scenarios.market_app import RecordingJobs, settings_for

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORM = "application/x-www-form-urlencoded"
EVENTS = ("ONCRMLEADADD", "ONCRMLEADUPDATE", "ONAPPUNINSTALL", "ONAPPINSTALL", "ONCRMDEALADD")
KNOWN_KEYS = (
    "event",
    "event_handler_id",
    "ts",
    "data[FIELDS][ID]",
    "data[CLEAN]",
    "auth[member_id]",
    "auth[application_token]",
    "auth[domain]",
    "auth[access_token]",
    "auth[refresh_token]",
    "auth[client_endpoint]",
    "auth[server_endpoint]",
)
OTHER_MEMBER = "0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "f" * 32
GONE_MEMBER = "fedcba9876543210fedcba9876543210"
GONE_TOKEN = "e" * 32

# -- strategies ---------------------------------------------------------------------------------

bracket_keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.text(alphabet="[]abcdeFIELDSauthdata_0123456789", min_size=0, max_size=40),
    st.text(max_size=30),
)
values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", " ", "0", "-1", "\uff11\uff12", "1e3", "0x10", "ONCRMLEADADD", "a" * 300]),
)
pairs = st.lists(st.tuples(bracket_keys, values), max_size=25)
raw_bodies = st.one_of(
    st.binary(max_size=600),
    pairs.map(lambda p: urlencode(p).encode()),
    st.text(alphabet="%[]=&;+abcZ09\x00é", max_size=200).map(str.encode),
)


def _mangled(token: str) -> st.SearchStrategy[str | None]:
    """Every way a delivery can carry the wrong application_token for a portal."""
    return st.one_of(
        st.none(),
        st.just(""),
        st.text(max_size=40),
        st.sampled_from(
            [OTHER_TOKEN, GONE_TOKEN, token.upper(), token[:-1], token + "0", f" {token}"]
        ),
        st.integers(0, len(token) - 1).map(lambda i: token[:i] + "x" + token[i + 1 :]),
    ).filter(lambda value: value != token)


@st.composite
def forged_forms(draw: Any, member_id: str, token: str) -> list[tuple[str, str]]:
    """A well-formed event delivery that is not authentic."""
    member = draw(st.sampled_from([member_id, OTHER_MEMBER, GONE_MEMBER, "nobody", ""]))
    if member == OTHER_MEMBER:
        candidate = draw(st.one_of(st.just(token), _mangled(OTHER_TOKEN)))
    elif member == GONE_MEMBER:
        candidate = draw(st.one_of(st.just(GONE_TOKEN), st.just(token), _mangled(GONE_TOKEN)))
    else:
        candidate = draw(_mangled(token))
    form = [
        ("event", draw(st.one_of(st.sampled_from(EVENTS), st.text(max_size=12)))),
        ("ts", draw(st.integers(0, 2**40).map(str))),
        ("auth[member_id]", member),
        ("auth[domain]", draw(st.sampled_from(["evil.example.com", "127.0.0.1:1", ""]))),
        ("auth[client_endpoint]", "https://evil.example.com/rest/"),
        ("auth[server_endpoint]", "https://evil.example.com/rest/"),
        ("auth[access_token]", draw(st.text(max_size=40))),
        ("auth[refresh_token]", draw(st.text(max_size=40))),
        ("data[FIELDS][ID]", draw(st.one_of(st.integers(1, 10**6).map(str), values))),
        ("data[CLEAN]", draw(st.sampled_from(["0", "1"]))),
    ]
    if candidate is not None:
        form.append(("auth[application_token]", candidate))
    return draw(st.permutations(form))


# -- the parser ---------------------------------------------------------------------------------


@FUZZ
@given(raw_bodies)
def test_any_body_parses_or_is_malformed(body: bytes) -> None:
    for form in (body, body.decode("utf-8", errors="replace")):
        try:
            event = parse_event(form)
        except MalformedEvent:
            continue
        assert isinstance(event, Event) and event.name and event.member_id


@FUZZ
@given(pairs)
def test_any_pairs_parse_or_are_malformed(form: list[tuple[str, str]]) -> None:
    try:
        event = parse_event(form)
    except MalformedEvent:
        return
    assert dict(form).get("event", "").strip().upper() == event.name


@FUZZ
@given(
    event=st.sampled_from(["ONCRMLEADADD", "ONCRMLEADUPDATE"]),
    member=st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True),
    token=st.text(min_size=1, max_size=64),
    lead_id=st.integers(1, 10**17),
    order=st.randoms(use_true_random=False),
)
def test_a_well_formed_delivery_parses_to_what_was_sent(
    event: str, member: str, token: str, lead_id: int, order: Any
) -> None:
    form = [
        ("event", event),
        ("data[FIELDS][ID]", str(lead_id)),
        ("auth[member_id]", member),
        ("auth[application_token]", token),
        ("auth[domain]", "x.bitrix24.com"),
    ]
    order.shuffle(form)

    parsed = parse_event(urlencode(form).encode())

    assert (parsed.name, parsed.member_id, parsed.application_token, parsed.lead_id) == (
        event,
        member,
        token,
        lead_id,
    )


@FUZZ
@given(key=st.sampled_from(KNOWN_KEYS), first=values, second=values)
def test_a_repeated_field_is_malformed_never_last_wins(key: str, first: str, second: str) -> None:
    form = [
        ("event", "ONCRMLEADADD"),
        ("data[FIELDS][ID]", "5"),
        ("auth[member_id]", "m1"),
        ("auth[application_token]", "t"),
    ]
    with pytest.raises(MalformedEvent):
        parse_event([*form, (key, first), (key, second)])


# -- the endpoint -------------------------------------------------------------------------------


class Target:
    """The app under fuzz: its Flask client, its database and its recorded jobs."""

    def __init__(self, app: Any, jobs: RecordingJobs, member_id: str, token: str) -> None:
        self.client = app.test_client()
        self.engine = app.extensions["b24app"].engine
        self.jobs = jobs
        self.member_id = member_id
        self.token = token

    def state(self) -> dict[str, Any]:
        """Every row of every table, and every job enqueued."""
        meta = MetaData()
        meta.reflect(self.engine)
        with self.engine.connect() as conn:
            tables = {
                name: sorted(map(repr, conn.execute(select(table)).all()))
                for name, table in meta.tables.items()
            }
        queued = (list(self.jobs.lead_events), list(self.jobs.runs), list(self.jobs.sweeps))
        return {"tables": tables, "jobs": queued}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with Sandbox(plan="fast", seed_leads=5) as portal:
        jobs = RecordingJobs()
        app = create_app(settings_for(tmp_path_factory.mktemp("fuzz"), portal), jobs=jobs)
        store = app.extensions["b24app"].installations
        grant = install_into(store, portal)
        for member_id, token, status in (
            (OTHER_MEMBER, OTHER_TOKEN, inst.ACTIVE),
            (GONE_MEMBER, GONE_TOKEN, inst.UNINSTALLED),
        ):
            store.save_installation(
                inst.Installation(
                    member_id=member_id,
                    domain=f"{member_id[:6]}.bitrix24.com",
                    client_endpoint=f"https://{member_id[:6]}.bitrix24.com/rest/",
                    access_token="a" * 32,
                    refresh_token="r" * 32,
                    application_token=token,
                )
            )
            if status != inst.ACTIVE:
                store.mark_uninstalled(member_id, clean=False)
        yield Target(app, jobs, grant["member_id"], grant["application_token"])


def _post(target: Target, body: bytes, content_type: str = FORM) -> int:
    return target.client.post("/events", data=body, content_type=content_type).status_code


@pytest.mark.slow  # 100 deliveries to a live app: about 20 s
@FUZZ
@given(body=raw_bodies, content_type=st.sampled_from([FORM, "text/plain", "application/json"]))
def test_a_malformed_body_is_4xx_and_changes_nothing(
    target: Target, body: bytes, content_type: str
) -> None:
    try:
        event = parse_event(body)
    except MalformedEvent:
        event = None
    # Only a delivery carrying the portal's own token is authentic; random bodies never do.
    assume(event is None or event.application_token != target.token)
    before = target.state()

    status = _post(target, body, content_type)

    assert 400 <= status < 500
    assert target.state() == before


@pytest.mark.slow  # 100 deliveries to a live app: about 25 s
@FUZZ
@given(data=st.data())
def test_a_forged_delivery_is_rejected_and_changes_nothing(target: Target, data: Any) -> None:
    form = data.draw(forged_forms(target.member_id, target.token))
    before = target.state()

    status = _post(target, urlencode(form).encode())

    assert status in (400, 401)
    assert target.state() == before


tokens = st.from_regex(r"[A-Za-z0-9_.\-]{8,64}", fullmatch=True)


@pytest.mark.slow  # 100 deliveries to a live app: about 25 s
@FUZZ
@given(
    member=st.one_of(
        st.sampled_from([OTHER_MEMBER, GONE_MEMBER]),
        st.from_regex(r"[a-f0-9]{32}", fullmatch=True),
    ),
    real_member=st.booleans(),
    access=tokens,
    refresh=tokens,
    application=tokens,
    domain=st.sampled_from(["evil.example.com", "127.0.0.1:1", "some-domain.bitrix24.com"]),
)
def test_a_forged_install_event_stores_nothing(
    target: Target,
    member: str,
    real_member: bool,
    access: str,
    refresh: str,
    application: str,
    domain: str,
) -> None:
    """ONAPPINSTALL with token-shaped values: the OAuth server refuses the refresh token."""
    assume(application != target.token)
    form = {
        "event": "ONAPPINSTALL",
        "data[VERSION]": "1",
        "data[INSTALLED]": "Y",
        "auth[member_id]": target.member_id if real_member else member,
        "auth[domain]": domain,
        "auth[client_endpoint]": f"https://{domain}/rest/",
        "auth[server_endpoint]": f"https://{domain}/rest/",
        "auth[access_token]": access,
        "auth[refresh_token]": refresh,
        "auth[application_token]": application,
    }
    before = target.state()

    assert _post(target, urlencode(form).encode()) == 401
    assert target.state() == before


def test_the_fuzzed_app_still_accepts_the_authentic_delivery(target: Target) -> None:
    """The properties above are not vacuous: the same app enqueues a genuine delivery."""
    form = {
        "event": "ONCRMLEADUPDATE",
        "data[FIELDS][ID]": "3",
        "auth[member_id]": target.member_id,
        "auth[application_token]": target.token,
    }
    queued = len(target.jobs.lead_events)

    assert _post(target, urlencode(form).encode()) == 200
    assert target.jobs.lead_events[queued:] == [(target.member_id, 3, "ONCRMLEADUPDATE")]
