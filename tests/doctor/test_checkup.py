"""Each reading of `b24app.crm.checkup` and `b24app.doctor.public_url_check`, on answers written
by hand in the shapes the docs and the server code give."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from b24app.crm import checkup
from b24app.crm.checkup import FAIL, OK, WARN, Answers
from b24app.doctor import public_url_check
from b24app.errors import B24Error, OperationTimeLimit, make_error
from b24app.rest.response import Time
from b24app.vocabulary import BOUND_EVENTS

STAGES = [
    {"ENTITY_ID": "STATUS", "STATUS_ID": "NEW", "NAME": "New", "SORT": 10, "SEMANTICS": None},
    {"ENTITY_ID": "STATUS", "STATUS_ID": "CONVERTED", "NAME": "Good", "SORT": 60, "SEMANTICS": "S"},
    {"ENTITY_ID": "STATUS", "STATUS_ID": "JUNK", "NAME": "Junk", "SORT": 70, "SEMANTICS": "F"},
]
CATEGORIES = {"categories": [{"id": 0, "name": "General", "isDefault": "Y"}]}


def answers(**results: Any) -> Answers:
    return Answers(results=results)


def test_first_batch_is_one_request_of_reads_only() -> None:
    commands = checkup.first_commands(app=True)
    assert len(commands) <= 50
    assert len({c.key for c in commands}) == len(commands)
    writes = [c.method for c in commands if c.method.endswith((".add", ".update", ".set", ".bind"))]
    assert writes == []
    assert [c.key for c in checkup.second_commands([3, 4])] == ["0", "1"]
    assert checkup.second_commands([])[0].method == "user.admin"


def test_credentials_name_the_acting_user() -> None:
    check = checkup.credentials(
        answers(me={"ID": "7", "NAME": "Ann", "LAST_NAME": "Lee"}), app=False
    )
    assert (check.status, check.summary) == (OK, "accepted: the webhook acts as user #7 (Ann Lee)")


@pytest.mark.parametrize(
    ("granted", "app", "status"),
    [
        (["crm"], False, OK),
        (["user"], False, FAIL),
        (["crm"], True, FAIL),
        (["crm", "user"], True, OK),
    ],
)
def test_scopes(granted: list[str], app: bool, status: str) -> None:
    check = checkup.scopes(answers(scope=granted), app=app)
    assert check.status == status
    if status == FAIL:
        assert "lacks" in check.summary and check.fix


def test_scopes_from_a_webhooks_app_info_when_scope_failed() -> None:
    got = Answers(results={"app": {"SCOPE": ["crm"], "LICENSE": "en_std"}}, errors={})
    assert checkup.scopes(got, app=False).status == OK


def test_admin() -> None:
    assert checkup.admin(answers(admin=True)).status == OK
    refused = checkup.admin(answers(admin=False))
    assert refused.status == FAIL and "administrator" in refused.fix


def test_mode_classic_ok_simple_fails_with_the_way_back() -> None:
    assert checkup.mode(answers(mode=1), None).status == OK
    simple = checkup.mode(answers(mode="2"), "en_std")
    assert simple.status == FAIL and "Simple CRM" in simple.summary and "en_std" in simple.summary
    assert "CRM mode" in simple.fix
    broken = Answers(errors={"mode": make_error("ACCESS_DENIED", "no")})
    assert checkup.mode(broken, None).status == FAIL


def test_methods_missing_one_fails() -> None:
    everything = {
        checkup.method_key(i): {"isExisting": True, "isAvailable": True}
        for i in range(len(checkup.CONVERSION_METHODS))
    }
    assert checkup.methods(answers(**everything)).status == OK
    gone = checkup.CONVERSION_METHODS.index("crm.item.productrow.list")
    everything[checkup.method_key(gone)] = {"isExisting": False, "isAvailable": False}
    check = checkup.methods(answers(**everything))
    assert check.status == FAIL and check.data["missing"] == ["crm.item.productrow.list"]
    assert checkup.methods(answers()).status == WARN


def test_stages_need_a_success_stage() -> None:
    check = checkup.stages(answers(ls=STAGES, cat=CATEGORIES))
    assert check.status == OK and check.data == {"success": "CONVERTED", "active": ["NEW"]}
    without = [s for s in STAGES if s["SEMANTICS"] != "S"]
    assert checkup.stages(answers(ls=without, cat=CATEGORIES)).status == FAIL


def test_pipelines() -> None:
    assert checkup.pipelines(answers(ls=STAGES, cat=CATEGORIES)).status == OK
    assert checkup.pipelines(answers(ls=STAGES, cat={"categories": []})).status == FAIL


def uf(name: str, label: str, kind: str = "string") -> dict[str, str]:
    return {"FIELD_NAME": name, "EDIT_FORM_LABEL": label, "USER_TYPE_ID": kind, "MULTIPLE": "N"}


def test_custom_fields_pair_or_are_missing() -> None:
    lead = [uf("UF_CRM_1", "Budget", "money"), uf("UF_CRM_2", "Lead only")]
    twins = [uf("UF_CRM_9", "budget", "money")]
    got = answers(uf_lead=lead, uf_deal=twins, uf_contact=twins, uf_company=twins)
    check = checkup.custom_fields(got)
    assert check.status == WARN and "(deal: Lead only)" in check.summary
    assert check.data["deal"] == {"paired": {"UF_CRM_1": "UF_CRM_9"}, "missing": ["UF_CRM_2"]}
    every = answers(uf_lead=lead[:1], uf_deal=twins, uf_contact=twins, uf_company=twins)
    assert checkup.custom_fields(every).status == OK
    assert checkup.custom_fields(answers(uf_lead=[], uf_deal=twins)).status == OK


@pytest.mark.parametrize(
    ("license_name", "configured", "status", "plan"),
    [
        ("en_ent250", "enterprise", OK, "enterprise"),
        ("ru_ent1000", "standard", WARN, "enterprise"),
        ("en_std", "standard", OK, "standard"),
        ("en_std", "enterprise", WARN, "standard"),
        (None, "standard", WARN, "unknown"),
    ],
)
def test_plan_from_the_licence(license_name, configured, status, plan) -> None:
    got = answers(app={"LICENSE": license_name} if license_name else {})
    check = checkup.plan(got, configured)
    assert (check.status, check.data["plan"]) == (status, plan)


def test_operating_headroom_from_the_answers_time() -> None:
    methods = {"leads": "crm.lead.list", "ls": "crm.status.list"}
    light = Answers(times={"leads": Time(operating=12.5), "ls": Time(operating=0.2)})
    check = checkup.operating([(light, methods)])
    assert check.status == OK and "crm.lead.list, 12.5 s of 480 s" in check.summary
    heavy = Answers(times={"leads": Time(operating=300.0)})
    assert checkup.operating([(heavy, methods)]).status == WARN
    blocked = OperationTimeLimit("blocked", code="OPERATION_TIME_LIMIT")
    check = checkup.operating([(Answers(errors={"leads": blocked}), methods)])
    assert check.status == FAIL and check.data["blocked"] == ["crm.lead.list"]
    assert checkup.operating([(Answers(), methods)]).status == OK


def test_events_bound_to_the_handler() -> None:
    handler = "https://app.example.com/events"
    rows = [{"event": e.lower(), "handler": handler, "offline": 0} for e in BOUND_EVENTS]
    assert checkup.events(answers(ev=rows), handler, BOUND_EVENTS).status == OK
    check = checkup.events(answers(ev=rows[:1]), handler, BOUND_EVENTS)
    assert check.status == FAIL and check.data["missing"] == list(BOUND_EVENTS[1:])
    elsewhere = [{**r, "handler": "https://old.example.com/events"} for r in rows]
    assert checkup.events(answers(ev=elsewhere), handler, BOUND_EVENTS).status == FAIL


def test_variants_read_from_the_answers() -> None:
    assert checkup.batch_sections({"result": [True, []]}).value == "code"
    assert checkup.batch_sections({"result": {"0": True}}).value == "docs"
    assert checkup.batch_sections(None).value == "unknown"
    rows = Answers(results={"0": True, "1": {"productRows": []}})
    assert checkup.productrow_owner_arrays(rows).value == "code"
    refused: dict[str, B24Error] = {"1": make_error("REQUIRED_ARG_MISSING", "x")}
    assert checkup.productrow_owner_arrays(Answers({"0": True}, refused)).value == "docs"
    assert checkup.productrow_owner_arrays(Answers({"0": True})).value == "unknown"
    assert checkup.error_statuses(401, "insufficient_scope", "department.get").value == "code"
    assert checkup.error_statuses(403, "insufficient_scope", "department.get").value == "docs"
    assert checkup.error_statuses(404, "ERROR_METHOD_NOT_FOUND", "department.get").value == (
        "unknown"
    )
    assert checkup.error_statuses(None, "", None).value == "unknown"
    assert checkup.status_probe(["crm", "user"]) == "department.get"
    assert checkup.status_probe(["crm", "user", "department"]) is None


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status


def _get(status: int | None):
    def get(url: str, **_: Any) -> Any:
        if status is None:
            raise requests.ConnectionError("refused")
        return _Answer(status)

    return get


@pytest.mark.parametrize(
    ("url", "status", "expected"),
    [
        (None, 200, FAIL),
        ("https://app.example.com", None, FAIL),
        ("https://app.example.com", 502, FAIL),
        ("http://127.0.0.1:8000", 200, WARN),
        ("http://10.1.2.3", 200, WARN),
        ("https://app.example.com/", 200, OK),
    ],
)
def test_public_url(url: str | None, status: int | None, expected: str) -> None:
    assert public_url_check(url, _get(status)).status == expected
