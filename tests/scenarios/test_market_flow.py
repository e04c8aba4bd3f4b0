"""The Market flow end to end: a sandbox portal installs the app served on a real loopback port,
the app binds its events, a lead added on the portal is delivered to /events and converted by
the auto-convert rule; uninstalling with CLEAN=1 purges the portal's data."""

from __future__ import annotations

from b24app.crm.policy import AutoConvert, Policy
from b24app.jobs import Jobs
from b24app.rest import PortalClient
from b24app.store import installations as inst
from handlers import create_app
from handlers.devserver import ThreadedServer
from sandbox import Sandbox
from tests.scenarios.market_app import history_events, settings_for

WANTED = {"ONCRMLEADADD", "ONCRMLEADUPDATE", "ONAPPUNINSTALL"}


def _add_lead(portal: Sandbox, title: str, stage: str) -> int:
    fields = {
        "TITLE": title,
        "NAME": "Ana",
        "LAST_NAME": "Souza",
        "STATUS_ID": stage,
        "PHONE": [{"VALUE": "+55 11 5555 0101", "VALUE_TYPE": "WORK"}],
    }
    with PortalClient.from_webhook(portal.webhook_url) as hook:
        return int(hook.call("crm.lead.add", {"fields": fields}).result)


def _deals_of(portal: Sandbox, lead_id: int) -> list[dict]:
    """The deals b24app created from the lead (it marks them ORIGINATOR_ID/ORIGIN_ID)."""
    flt = {"ORIGINATOR_ID": "b24app", "ORIGIN_ID": f"lead-{lead_id}"}
    with PortalClient.from_webhook(portal.webhook_url) as hook:
        return hook.call("crm.deal.list", {"filter": flt}).result


def _stage(portal: Sandbox, lead_id: int) -> str:
    with PortalClient.from_webhook(portal.webhook_url) as hook:
        return hook.call("crm.lead.get", {"id": lead_id}).result["STATUS_ID"]


def test_install_bind_deliver_convert_uninstall(tmp_path) -> None:
    with Sandbox(mode="classic") as portal, ThreadedServer() as served:
        settings = settings_for(tmp_path, portal, public_url=served.url)
        app = create_app(settings, jobs=Jobs(settings, immediate=True))
        served.mount(app)
        ctx = app.extensions["b24app"]

        # The Market POSTs the installer page; the app proves, stores and binds. ONAPPINSTALL
        # follows with the same (now used) refresh token: a repeat, answered 200, nothing new.
        grant = portal.install_app(
            app_url=f"{served.url}/install", event_handler_url=f"{served.url}/events"
        )
        member_id = grant["member_id"]
        assert grant["install_status"] == 200
        assert portal.wait_events(30)
        assert [(d.event, d.status) for d in portal.deliveries] == [("ONAPPINSTALL", 200)]
        assert ctx.installations.get_installation(member_id).status == inst.ACTIVE
        assert history_events(ctx.engine, member_id) == ["installed"]
        with ctx.client(member_id) as client:
            rows = client.call("event.get").result
        assert {(r["event"], r["handler"]) for r in rows} == {
            (event, f"{served.url}/events") for event in WANTED
        }

        # The admin switched the rule on: convert leads that arrive in stage NEW.
        policy = Policy(auto=AutoConvert(enabled=True, stages=("NEW",)))
        ctx.portal_settings.save_policy(member_id, policy.to_dict(), by="1")

        picked = _add_lead(portal, "Website form", "NEW")
        left = _add_lead(portal, "Cold call", "IN_PROCESS")
        assert portal.wait_events(30)

        delivered = [d for d in portal.deliveries if d.event == "ONCRMLEADADD"]
        assert len(delivered) == 2 and all(d.ok for d in delivered)
        assert len(_deals_of(portal, picked)) == 1  # converted once, whatever echoes followed
        assert _stage(portal, picked) == "CONVERTED"
        assert _deals_of(portal, left) == [] and _stage(portal, left) == "IN_PROCESS"
        # Each event's lead joins the portal's automatic job (here, with no window, one each);
        # the rule's stages are that job's lead selection, so the other lead is skipped there.
        assert {j.kind for j in ctx.journal(member_id).jobs()} == {"event"}
        assert sum(j.converted for j in ctx.journal(member_id).jobs()) == 1

        # Uninstalling with "delete app data" ticked: the portal is marked and its data purged.
        portal.uninstall_app(clean=True)
        assert portal.wait_events(30)
        stored = ctx.installations.get_installation(member_id)
        assert stored.status == inst.UNINSTALLED and stored.access_token == ""
        assert ctx.portal_settings.policy_data(member_id) is None
        assert ctx.journal(member_id).jobs() == []
        assert history_events(ctx.engine, member_id)[:1] == ["installed"]
        assert history_events(ctx.engine, member_id)[-1] == "uninstalled"
