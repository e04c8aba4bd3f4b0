"""The client against the sandbox portal: request floors, limits, token expiry, faults, renames."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from b24app import errors as e
from b24app.config import PLANS, RateLimit
from b24app.rest import PortalClient
from b24app.store import installations as inst
from sandbox import Sandbox
from tests.rest.sandbox_app import Installed, lead_adds, race_refresh, spend_refresh_token


def fast_client(portal: Sandbox, plan: str = "fast", **kwargs: Any) -> PortalClient:
    return PortalClient.from_webhook(portal.webhook_url, rate=RateLimit(*PLANS[plan]), **kwargs)


@pytest.mark.slow  # 10,000 seeded leads; test_listing.py's portal and the 3,000 below in test-fast
def test_listing_10000_leads_takes_at_most_five_requests():
    with Sandbox(seed_leads=10_000, seed=1, plan="fast") as portal:
        client = fast_client(portal)
        ids = [
            int(row["ID"]) for row in client.iterate("crm.lead.list", {"select": ["ID", "TITLE"]})
        ]
        stats = portal.stats()
    assert len(ids) == 10_000 == len(set(ids))
    assert ids == sorted(ids)
    assert stats["http_requests"] == client.requests_made <= 5
    assert stats["sub_calls"] == {"crm.lead.list": 250}


def test_listing_with_a_filter_and_crm_item_list():
    with Sandbox(seed_leads=3_000, seed=2, plan="fast") as portal:
        client = fast_client(portal)
        active = list(
            client.iterate(
                "crm.lead.list",
                {"filter": {"STATUS_SEMANTIC_ID": "P"}, "select": ["ID", "STATUS_SEMANTIC_ID"]},
            )
        )
        items = list(client.iterate("crm.item.list", {"entityTypeId": 1, "select": ["id"]}))
    assert 0 < len(active) < 3_000
    assert {row["STATUS_SEMANTIC_ID"] for row in active} == {"P"}
    assert len(items) == 3_000 == len({row["id"] for row in items})


def test_2000_writes_on_the_standard_plan_draw_no_503():
    with Sandbox(seed_leads=0, seed=1, plan="standard") as portal:
        client = fast_client(portal, plan="standard")
        result = client.batch_many(lead_adds(2_000))
        stats = portal.stats()
    assert len(result.results) == 2_000 and not result.errors
    assert stats["query_limit_exceeded"] == 0
    assert stats["http_requests"] == 40
    assert stats["counts"]["lead"] == 2_000


def test_a_long_write_run_past_the_burst_draws_no_503():
    # 120 batches: more than twice the burst, on the standard plan fast-forwarded 25x
    with Sandbox(seed_leads=0, seed=1, plan="fast") as portal:
        client = fast_client(portal)
        result = client.batch_many(lead_adds(6_000))
        stats = portal.stats()
    assert len(result.results) == 6_000
    assert stats["query_limit_exceeded"] == 0
    assert stats["http_requests"] == 120
    assert stats["counts"]["lead"] == 6_000


def test_expired_tokens_mid_run_are_refreshed_once(tmp_path):
    with Sandbox(seed_leads=0, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        client = app.client()
        commands = lead_adds(1_500)
        done = 0
        for start in range(0, 1_500, 50):
            if start == 500:
                assert portal.expire_tokens() >= 1
            done += len(client.batch(commands[start : start + 50]).results)
        stats = portal.stats()
    assert done == 1_500 == stats["counts"]["lead"]
    assert stats["refreshes"] == 1
    assert [h.event for h in app.store.history(app.member_id)] == ["installed", "rotated"]
    assert app.store.get_installation(app.member_id).status == inst.ACTIVE


def test_two_processes_of_eight_threads_refresh_once(tmp_path):
    with Sandbox(seed_leads=60, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        outcomes, stats = race_refresh(portal, app)
    assert outcomes == [("ok", 50)] * 16, outcomes
    assert stats["refreshes"] == 1
    assert stats["oauth_requests"] == 1  # nobody else asked, so nobody got invalid_grant


def test_invalid_grant_ends_the_call_and_marks_the_portal(tmp_path):
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        spend_refresh_token(app)
        portal.expire_tokens()
        client = app.client()
        with pytest.raises(e.InvalidGrant, match="Invalid grant"):
            client.call("crm.lead.list")
        with pytest.raises(e.InvalidGrant, match="reinstall_needed"):
            app.client().call("crm.lead.list")
        stats = portal.stats()
    assert stats["oauth_requests"] == 1
    assert client.requests_made == 1
    assert app.store.get_installation(app.member_id).status == inst.REINSTALL_NEEDED


def test_an_unpaid_portal_is_marked_and_skipped(tmp_path):
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        portal.set_portal_state("unpaid")
        portal.expire_tokens()
        with pytest.raises(e.PaymentRequired):
            app.client().call("crm.lead.list")
    assert app.store.list_installations(status=inst.PAYMENT_REQUIRED)[0].member_id == app.member_id


def test_a_renamed_portal_is_followed_and_remembered(tmp_path):
    with Sandbox(seed_leads=5, seed=1, plan="fast") as portal:
        app = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        client = app.client()
        assert len(client.call("crm.lead.list").result) == 5
        new_base = portal.move_domain()
        created = client.call("crm.lead.add", {"fields": {"TITLE": "after the move"}}).result
        again = client.call("crm.lead.get", {"id": created}).result
        stats = portal.stats()
    saved = app.store.get_installation(app.member_id)
    assert saved.client_endpoint == new_base + "/rest/"
    assert again["TITLE"] == "after the move"
    assert stats["counts"]["lead"] == 6  # the POST was re-sent once, not lost or doubled
    assert app.store.history(app.member_id)[-1].event == "moved"


def test_faults_reads_complete_and_writes_are_never_doubled():
    spec = "500:0.05,drop_before:0.03,drop_after:0.05,slow:0.02@0.2"
    with Sandbox(seed_leads=5_000, seed=3, plan="fast", faults=spec) as portal:
        client = fast_client(portal)
        ids = [row["ID"] for row in client.iterate("crm.lead.list", {"select": ["ID"]})]
        assert len(ids) == 5_000 == len(set(ids))
        result = client.batch_many(lead_adds(2_500, tag="F"))
        portal.set_faults(None)
        origins = Counter(
            row["ORIGIN_ID"]
            for row in client.iterate(
                "crm.lead.list", {"filter": {"%ORIGIN_ID": "F-"}, "select": ["ID", "ORIGIN_ID"]}
            )
            if str(row.get("ORIGIN_ID") or "").startswith("F-")
        )
        stats = portal.stats()
    unknown = {k for k, err in result.errors.items() if isinstance(err, e.OutcomeUnknown)}
    assert stats["faults"], "the spec injected nothing"
    assert unknown, "expected some writes with an unknown outcome"
    assert set(result.errors) == unknown
    assert max(origins.values()) == 1  # nothing was created twice
    created = {f"F-{key[1:]}" for key in result.results}
    assert created <= set(origins)  # everything reported created exists
