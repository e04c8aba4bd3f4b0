"""The guided mode switch against the sandbox: convert, guide, poll until the admin flips it."""

from __future__ import annotations

from typing import Any

import pytest

from b24app.crm.mode import Mode
from b24app.crm.policy import Policy
from b24app.crm.switch import switch
from b24app.errors import UsageError
from b24app.store.journal import Journal

from .conftest import client_for
from .portalstate import assert_converted, snapshot


def test_to_simple_converts_first_then_waits_for_the_admin(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=60)
    before = snapshot(sandbox.portal)
    policy = Policy.from_dict({"client": "both", "activities": "move", "pipeline": 7})
    steps: list[str] = []
    waits: list[float] = []

    def admin_flips_after_two_polls(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            assert sandbox.set_mode("simple")["converted"] == 0  # nothing left for Bitrix24

    report = switch(
        client_for(sandbox),
        journal,
        Mode.SIMPLE,
        policy,
        wait=admin_flips_after_two_polls,
        poll_interval=5,
        on_step=steps.append,
    )

    assert report.verified and report.mode_after is Mode.SIMPLE and waits == [5, 5]
    assert report.conversion is not None and report.conversion.status == "done"
    assert report.conversion.converted == len(before.active)
    assert journal.jobs()[0].kind == "switch"
    assert_converted(sandbox.portal, before, policy)
    assert steps[0].startswith("Converting the active leads first")
    assert "CRM mode" in report.guide_text and report.guide_text in steps
    assert steps[-1] == "The portal now reports Simple CRM."
    assert report.to_dict()["conversion"]["converted"] == report.conversion.converted


def test_to_classic_converts_nothing_and_reports_a_timeout(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=10, mode="simple")
    counts = sandbox.portal.counts()
    waits: list[float] = []

    report = switch(
        client_for(sandbox),
        journal,
        Mode.CLASSIC,
        Policy(),
        wait=waits.append,
        poll_timeout=12,
        poll_interval=5,
    )

    assert report.conversion is None and not report.verified
    assert report.mode_after is Mode.SIMPLE and waits == [5, 5, 2]
    assert sandbox.portal.counts() == counts and journal.jobs() == []
    assert "converts nothing" in report.guide_text


def test_already_in_the_target_mode_does_nothing(make_sandbox: Any, journal: Journal) -> None:
    sandbox = make_sandbox(seed_leads=10)
    report = switch(
        client_for(sandbox),
        journal,
        Mode.CLASSIC,
        Policy(),
        wait=lambda s: pytest.fail("no polling expected"),
    )
    assert report.verified and report.conversion is None
    assert report.guide_text == "The portal already uses Classic CRM; nothing to switch."
    with pytest.raises(UsageError):
        switch(client_for(sandbox), journal, Mode.SIMPLE, Policy(), poll_interval=0)


def test_an_interrupted_conversion_stops_the_switch_before_the_guide(
    make_sandbox: Any, journal: Journal
) -> None:
    sandbox = make_sandbox(seed_leads=60)
    progress: list[Any] = []

    def portal_deleted(update: Any) -> None:
        progress.append(update)
        if len(progress) == 3:
            sandbox.set_portal_state("deleted")

    report = switch(
        client_for(sandbox),
        journal,
        Mode.SIMPLE,
        Policy(),
        on_progress=portal_deleted,
        wait=lambda s: pytest.fail("no polling"),
    )

    assert report.conversion is not None and report.conversion.status == "interrupted"
    assert not report.verified and report.mode_after is Mode.CLASSIC
    assert "Resume it" in report.guide_text
