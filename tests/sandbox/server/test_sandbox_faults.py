"""Faults: injected 500s, dropped connections before/after the call, slow answers, expiry."""

from __future__ import annotations

import pytest
import requests

from sandbox.faults import FaultInjector, FaultRule, FaultSpecError, parse_faults
from sandbox.server import Sandbox

from .conftest import admin, call, oauth_call


def test_spec_language() -> None:
    rules = parse_faults("500:0.05, drop_after:0.05,slow:0.02@1.5,expire:every=500,drop_before")
    assert rules == (
        FaultRule("500", probability=0.05),
        FaultRule("drop_after", probability=0.05),
        FaultRule("slow", probability=0.02, seconds=1.5),
        FaultRule("expire", every=500),
        FaultRule("drop_before", probability=1.0),
    )
    assert parse_faults(None) == ()
    assert parse_faults("") == ()


@pytest.mark.parametrize(
    "spec", ["boom", "500:2", "500:x", "slow@-1", "expire:every=0", "drop_after:every=x"]
)
def test_bad_specs_are_rejected(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_faults(spec)


def test_probabilistic_faults_are_deterministic_per_seed() -> None:
    def draws(seed: int) -> list[list[str]]:
        injector = FaultInjector("500:0.3,drop_after:0.3", seed=seed)
        return [injector.decide().kinds for _ in range(200)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    fired = [k for kinds in draws(3) for k in kinds]
    assert 30 < fired.count("500") < 90


def test_schedule_fires_every_nth_request() -> None:
    injector = FaultInjector("500:every=3")
    assert [bool(injector.decide().kinds) for _ in range(9)] == [False, False, True] * 3


def test_injected_500_does_not_run_the_call(portal: Sandbox) -> None:
    before = portal.portal.counts()["lead"]
    portal.set_faults("500")
    response = call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "x"})
    portal.set_faults(None)
    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert portal.portal.counts()["lead"] == before
    assert portal.stats()["faults"] == {"500": 1}


def test_drop_before_is_a_connection_error_and_nothing_is_written(portal: Sandbox) -> None:
    before = portal.portal.counts()["lead"]
    portal.set_faults("drop_before")
    with pytest.raises(requests.ConnectionError):
        call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "lost"})
    portal.set_faults(None)
    assert portal.portal.counts()["lead"] == before


def test_drop_after_is_a_connection_error_but_the_write_happened(portal: Sandbox) -> None:
    before = portal.portal.counts()["lead"]
    portal.set_faults("drop_after")
    with pytest.raises(requests.ConnectionError):
        call(portal.webhook_url, "crm.lead.add", fields={"TITLE": "stored anyway"})
    portal.set_faults(None)
    assert portal.portal.counts()["lead"] == before + 1
    assert portal.stats()["faults"] == {"drop_after": 1}


def test_drop_after_a_batch_stores_every_sub_call(portal: Sandbox) -> None:
    before = portal.portal.counts()["lead"]
    portal.set_faults("drop_after:every=1")
    with pytest.raises(requests.ConnectionError):
        call(
            portal.webhook_url,
            "batch",
            cmd={f"a{i}": f"crm.lead.add?fields[TITLE]=B{i}" for i in range(5)},
        )
    portal.set_faults(None)
    assert portal.portal.counts()["lead"] == before + 5


def test_slow_answer_times_a_client_out_after_the_write(portal: Sandbox) -> None:
    before = portal.portal.counts()["lead"]
    portal.set_faults("slow@1.5")
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            portal.webhook_url + "crm.lead.add", json={"fields": {"TITLE": "slow"}}, timeout=0.3
        )
    portal.set_faults(None)
    assert portal.portal.counts()["lead"] == before + 1


def test_expire_fault_expires_every_token(portal: Sandbox) -> None:
    token = portal.install_app()["access_token"]
    portal.set_faults("expire:every=2")
    first = oauth_call(portal, "profile", token)
    second = oauth_call(portal, "profile", token)
    portal.set_faults(None)
    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["error"] == "expired_token"
    assert portal.stats()["tokens_expired"] == 1


def test_faults_spare_the_oauth_server_and_admin(portal: Sandbox) -> None:
    portal.set_faults("500")
    install = portal.install_app()
    token = requests.get(
        f"{portal.oauth_server}/oauth/token/",
        timeout=10,
        params={
            "grant_type": "refresh_token",
            "client_id": portal.client_id,
            "client_secret": portal.client_secret,
            "refresh_token": install["refresh_token"],
        },
    )
    stats = admin(portal, "GET", "stats")
    assert token.status_code == 200
    assert stats.status_code == 200


def test_faults_can_be_changed_over_the_admin_endpoint(portal: Sandbox) -> None:
    assert admin(portal, "POST", "faults", spec="500:every=1").json() == {"faults": "500:every=1"}
    assert call(portal.webhook_url, "profile").status_code == 500
    bad = admin(portal, "POST", "faults", spec="explode")
    assert bad.status_code == 400
    assert "unknown fault kind" in bad.json()["error_description"]
    admin(portal, "POST", "faults", spec="")
    assert call(portal.webhook_url, "profile").status_code == 200
