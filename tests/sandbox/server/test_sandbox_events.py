"""Events: binding rules, delivery once with no retry, offline queues, install/uninstall events."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.server import Sandbox

from .conftest import Receiver, call, fixture, oauth_call


@pytest.fixture
def token(portal: Sandbox) -> str:
    return str(portal.install_app(scope="crm,user")["access_token"])


def bind(portal: Sandbox, token: str, **params: Any) -> dict[str, Any]:
    response = oauth_call(portal, "event.bind", token, **params)
    return {"status": response.status_code, **response.json()}


def test_bind_rules(portal: Sandbox, token: str, receiver: Receiver) -> None:
    ok = bind(portal, token, event="onCrmLeadAdd", handler=receiver.url())
    duplicate = bind(portal, token, event="ONCRMLEADADD", handler=receiver.url())
    unknown = bind(portal, token, event="ONNOTHING", handler=receiver.url())
    assert ok["status"] == 200 and ok["result"] is True
    assert (duplicate["status"], duplicate["error"], duplicate["error_description"]) == (
        400,
        "ERROR_HANDLER_ALREADY_EXIST",
        "Handler already exists!",
    )
    assert (unknown["status"], unknown["error"], unknown["error_description"]) == (
        400,
        "ERROR_EVENT_NOT_FOUND",
        "Event not found",
    )
    listed = oauth_call(portal, "event.get", token).json()["result"]
    assert listed == [
        {"event": "ONCRMLEADADD", "handler": receiver.url(), "auth_type": "0", "offline": 0}
    ]


def test_ordinary_user_cannot_bind_offline_or_for_someone_else(portal: Sandbox) -> None:
    user_token = portal.install_app(user_id=2)["access_token"]
    offline = bind(portal, user_token, event="ONCRMLEADADD", event_type="offline")
    other = bind(
        portal, user_token, event="ONCRMLEADADD", handler="http://127.0.0.1:9/h", auth_type=1
    )
    own = bind(
        portal, user_token, event="ONCRMLEADADD", handler="http://127.0.0.1:9/h", auth_type=2
    )
    assert (offline["status"], offline["error"]) == (403, "ACCESS_DENIED")
    assert (other["status"], other["error"]) == (403, "ACCESS_DENIED")
    assert own["result"] is True


def test_lead_event_is_delivered_once_with_the_documented_form(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    bind(portal, token, event="ONCRMLEADADD", handler=receiver.url())
    lead_id = call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "Evented"}).json()["result"]
    assert portal.wait_events()
    forms = receiver.forms("ONCRMLEADADD")
    assert len(forms) == 1
    form = forms[0]
    documented = fixture("event.ONCRMLEADADD")
    assert set(form) == set(documented)
    assert set(form["auth"]) == set(documented["auth"]) - {"refresh_token"}
    assert form["data"] == {"FIELDS": {"ID": str(lead_id)}}
    assert form["auth"]["member_id"] == portal.member_id
    assert form["auth"]["domain"] == portal.domain
    assert form["auth"]["client_endpoint"] == f"{portal.base_url}/rest/"
    raw = receiver.requests[0].raw
    assert "data%5BFIELDS%5D%5BID%5D=" in raw and "auth%5Bapplication_token%5D=" in raw
    # The token in the event is a working access token.
    answer = oauth_call(portal, "crm.lead.get", form["auth"]["access_token"], id=lead_id)
    assert answer.status_code == 200
    assert portal.stats()["events"] == {"delivered": 1, "failed": 0}


def test_a_failing_handler_loses_the_event_without_retry(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    receiver.status = 500
    bind(portal, token, event="ONCRMLEADADD", handler=receiver.url())
    call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "Lost event"})
    assert portal.wait_events()
    receiver.status = 200
    call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "Next one"})
    assert portal.wait_events()
    assert len(receiver.requests) == 2  # one attempt each, never a second for the first
    assert portal.stats()["events"] == {"delivered": 1, "failed": 1}
    assert [d.ok for d in portal.deliveries] == [False, True]


def test_unreachable_handler_counts_as_failed(portal: Sandbox, token: str) -> None:
    bind(portal, token, event="ONCRMLEADADD", handler="http://127.0.0.1:9/nowhere")
    call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "x"})
    assert portal.wait_events()
    assert portal.stats()["events"]["failed"] == 1


def test_no_events_until_the_install_is_finished(portal: Sandbox, receiver: Receiver) -> None:
    """Handlers are looked up only for apps that are active and INSTALLED
    (rest/lib/event/callback.php:108-116; docs settings/app-installation/installation-finish.md)."""
    unfinished = portal.install_app(finish=False)["access_token"]
    bind(portal, unfinished, event="ONCRMLEADADD", handler=receiver.url())
    call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "unseen"})
    assert portal.wait_events()
    assert receiver.forms("ONCRMLEADADD") == []
    portal.finish_install()
    call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "seen"})
    assert portal.wait_events()
    assert len(receiver.forms("ONCRMLEADADD")) == 1


def test_offline_events_keep_the_latest_state_per_object(portal: Sandbox, token: str) -> None:
    assert bind(portal, token, event="ONCRMLEADUPDATE", event_type="offline")["result"] is True
    for title in ("a", "b", "c"):
        call(portal.webhook_url, "crm.lead.update", id=1, fields={"TITLE": title})
    call(portal.webhook_url, "crm.lead.update", id=2, fields={"TITLE": "z"})
    listed = oauth_call(portal, "event.offline.list", token).json()
    assert listed["total"] == 2
    assert [row["EVENT_DATA"]["FIELDS"]["ID"] for row in listed["result"]] == [1, 2]
    assert set(listed["result"][0]) == {
        "ID",
        "TIMESTAMP_X",
        "EVENT_NAME",
        "EVENT_DATA",
        "EVENT_ADDITIONAL",
        "MESSAGE_ID",
        "PROCESS_ID",
        "ERROR",
    }

    got = oauth_call(portal, "event.offline.get", token).json()["result"]
    assert got["process_id"] is None  # clear=1 (default) deletes on read
    assert set(got["events"][0]) == set(fixture("event.offline.get")["result"]["events"][0])
    assert len(got["events"]) == 2
    assert oauth_call(portal, "event.offline.get", token).json()["result"]["events"] == []


def test_offline_reserve_clear_and_error(portal: Sandbox, token: str) -> None:
    bind(portal, token, event="ONCRMLEADUPDATE", event_type="offline")
    for lead_id in (1, 2, 3):
        call(portal.webhook_url, "crm.lead.update", id=lead_id, fields={"TITLE": "t"})
    reserved = oauth_call(portal, "event.offline.get", token, clear=0, limit=2).json()["result"]
    process_id = reserved["process_id"]
    assert len(process_id) == 32 and len(reserved["events"]) == 2
    # A parallel reader gets a disjoint set.
    other = oauth_call(portal, "event.offline.get", token, clear=0).json()["result"]
    assert {e["ID"] for e in other["events"]}.isdisjoint({e["ID"] for e in reserved["events"]})
    first, second = (e["MESSAGE_ID"] for e in reserved["events"])
    assert (
        oauth_call(
            portal, "event.offline.error", token, process_id=process_id, message_id=[second]
        ).json()["result"]
        is True
    )
    assert (
        oauth_call(
            portal, "event.offline.clear", token, process_id=process_id, message_id=[first]
        ).json()["result"]
        is True
    )
    errors = oauth_call(portal, "event.offline.get", token, error=1).json()["result"]["events"]
    assert [e["MESSAGE_ID"] for e in errors] == [second]
    missing = oauth_call(portal, "event.offline.clear", token)
    assert missing.status_code == 400


def test_unbind_counts_and_needs_admin(portal: Sandbox, token: str, receiver: Receiver) -> None:
    bind(portal, token, event="ONCRMLEADADD", handler=receiver.url())
    bind(portal, token, event="ONCRMLEADADD", handler=receiver.url(), auth_type=2)
    only_plain = oauth_call(
        portal, "event.unbind", token, event="ONCRMLEADADD", handler=receiver.url(), auth_type=0
    ).json()
    assert only_plain["result"] == {"count": 1}
    rest = oauth_call(
        portal, "event.unbind", token, event="ONCRMLEADADD", handler=receiver.url()
    ).json()
    assert rest["result"] == {"count": 1}
    assert oauth_call(portal, "event.get", token).json()["result"] == []


def test_install_posts_the_documented_installer_fields(portal: Sandbox, receiver: Receiver) -> None:
    install = portal.install_app(app_url=receiver.url("/install"), scope="crm,user")
    assert install["install_status"] == 200
    request = receiver.requests[0]
    documented = fixture("install.handler.request-fields")
    assert set(request.query) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    assert set(documented) - set(request.query) <= set(request.form)
    assert request.form["AUTH_ID"] == install["access_token"]
    assert request.form["REFRESH_ID"] == install["refresh_token"]
    assert request.form["APPLICATION_TOKEN"] == install["application_token"]
    assert request.form["member_id"] == portal.member_id
    assert request.query["DOMAIN"] == portal.domain and request.query["PROTOCOL"] == "0"


def test_onappinstall_and_onappuninstall(portal: Sandbox, receiver: Receiver) -> None:
    install = portal.install_app(event_handler_url=receiver.url("/events"))
    assert portal.wait_events()
    bind(portal, install["access_token"], event="ONAPPUNINSTALL", handler=receiver.url("/bye"))
    portal.uninstall_app(clean=True)
    assert portal.wait_events()
    installed = receiver.forms("ONAPPINSTALL")
    uninstalled = receiver.forms("ONAPPUNINSTALL")
    assert len(installed) == 1 and len(uninstalled) == 2  # handler URL + bound handler
    documented_install = fixture("event.ONAPPINSTALL")
    assert set(installed[0]) == set(documented_install)
    assert set(installed[0]["auth"]) == set(documented_install["auth"])
    assert installed[0]["auth"]["application_token"] == install["application_token"]
    documented_uninstall = fixture("event.ONAPPUNINSTALL")
    by_handler = next(f for f in uninstalled if "event_handler_id" not in f)
    assert set(by_handler) == set(documented_uninstall)
    assert set(by_handler["auth"]) == set(documented_uninstall["auth"])
    assert by_handler["data"]["CLEAN"] == "1"
    # Handlers are gone after the uninstall.
    token = portal.install_app()["access_token"]
    assert oauth_call(portal, "event.get", token).json()["result"] == []


def test_auth_connector_changes_are_not_echoed_offline(portal: Sandbox, token: str) -> None:
    bind(portal, token, event="ONCRMLEADUPDATE", event_type="offline", auth_connector="sync1")
    oauth_call(
        portal, "crm.lead.update", token, id=1, fields={"TITLE": "mine"}, auth_connector="sync1"
    )
    assert oauth_call(portal, "event.offline.list", token).json()["total"] == 0
    oauth_call(portal, "crm.lead.update", token, id=1, fields={"TITLE": "someone else"})
    assert oauth_call(portal, "event.offline.list", token).json()["total"] == 1


def test_onofflineevent_notifies_at_most_once_per_min_timeout(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    bind(portal, token, event="ONCRMLEADADD", event_type="offline")
    bind(portal, token, event="ONOFFLINEEVENT", handler=receiver.url(), options={"minTimeout": 60})
    for title in ("one", "two"):
        call(portal.webhook_url, "crm.lead.add", fields={"TITLE": title})
    assert portal.wait_events()
    notices = receiver.forms("ONOFFLINEEVENT")
    assert len(notices) == 1
    assert notices[0]["data"] == {
        "type": "add",
        "event": "ONCRMLEADADD",
        "handler": receiver.url(),
        "minTimeout": "60",
    }
    assert notices[0]["auth"]["refresh_token"]
    assert oauth_call(portal, "event.offline.list", token).json()["total"] == 2


def test_the_apps_own_rest_changes_echo_back(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    """Nothing filters the app's own changes out of its online events (rest/lib/event/
    callback.php:93-116 looks handlers up by event name only; docs api-reference/events/
    index.md); only an offline binding's auth_connector is left out (offline-events.md)."""
    bind(portal, token, event="ONCRMLEADADD", handler=receiver.url())
    lead_id = oauth_call(portal, "crm.lead.add", token, fields={"TITLE": "mine"}).json()["result"]
    assert portal.wait_events()
    assert [f["data"]["FIELDS"]["ID"] for f in receiver.forms("ONCRMLEADADD")] == [str(lead_id)]


def test_handler_chains_stop_after_seven_hops(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    """rest/classes/general/rest_util.php:19 (HANDLER_SESSION_TTL = 7), rest/lib/event/
    session.php:19-39 and sender.php:185-197: an event's token carries the hops left; a call made
    with it passes on one less; at 0 the event is not sent."""
    bind(portal, token, event="ONCRMLEADUPDATE", handler=receiver.url())
    lead_id = call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "loop"}).json()["result"]
    call(portal.webhook_url, "crm.lead.update", id=lead_id, fields={"TITLE": "hop 0"})
    assert portal.wait_events()
    for hop in range(1, 10):
        forms = receiver.forms("ONCRMLEADUPDATE")
        if len(forms) < hop:
            break
        # The handler answers each event by changing the lead with the event's own token.
        event_token = forms[-1]["auth"]["access_token"]
        answer = oauth_call(
            portal, "crm.lead.update", event_token, id=lead_id, fields={"TITLE": f"hop {hop}"}
        )
        assert answer.status_code == 200
        assert portal.wait_events()
    assert len(receiver.forms("ONCRMLEADUPDATE")) == 7
    assert portal.hub.cut_chains == 1
    # A fresh change by a person starts a new chain.
    call(portal.webhook_url, "crm.lead.update", id=lead_id, fields={"TITLE": "again"})
    assert portal.wait_events()
    assert len(receiver.forms("ONCRMLEADUPDATE")) == 8


def test_events_of_robot_changes_carry_no_tokens(
    portal: Sandbox, token: str, receiver: Receiver
) -> None:
    """docs api-reference/events/index.md: when a robot, a workflow or an agent made the change,
    the event's `auth` has no access token (the rest of `auth` is there to verify it)."""
    bind(portal, token, event="ONCRMLEADUPDATE", handler=receiver.url())
    portal.run_as_robot("crm.lead.update", {"id": 1, "fields": {"TITLE": "by a robot"}})
    assert portal.wait_events()
    (form,) = receiver.forms("ONCRMLEADUPDATE")
    assert form["data"] == {"FIELDS": {"ID": "1"}}
    assert not {"access_token", "refresh_token", "expires_in", "scope"} & set(form["auth"])
    assert form["auth"]["application_token"] == portal.authority.installation.application_token
    assert form["auth"]["member_id"] == portal.member_id


def test_mode_get_answers_simple_when_the_plan_forbids_leads(portal: Sandbox) -> None:
    """crm/lib/settings/leadsettings.php:297-306: LeadSettings::isEnabled() is false without the
    plan's leads permission, whatever the switch says - crm.settings.mode.get answers 2."""
    assert call(portal.webhook_url, "crm.settings.mode.get").json()["result"] == 1
    portal.set_plan_leads(False)
    assert portal.portal.mode == "classic"
    assert call(portal.webhook_url, "crm.settings.mode.get").json()["result"] == 2
    portal.set_plan_leads(True)
    assert call(portal.webhook_url, "crm.settings.mode.get").json()["result"] == 1
