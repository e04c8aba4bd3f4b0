"""The guided CRM-mode switch: convert first, tell the admin where the toggle is, then confirm.

REST can read the CRM mode but never set it (https://apidocs.bitrix24.com/api-reference/crm/crm-settings-mode-get.html),
so the switch is: (to Simple) convert every active lead with the admin's options - what Bitrix24
itself would do on the way, https://helpdesk.bitrix24.com/open/1478503/ - then show the steps of
`b24app.crm.mode.guide_switch` and poll `crm.settings.mode.get` until the portal reports the
target mode or the time runs out. To Classic nothing is converted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from b24app.crm.conversion import ProgressCallback, convert, read_mode
from b24app.crm.journal import DONE, INTERRUPTED, JobJournal
from b24app.crm.mode import Mode, guide_switch
from b24app.crm.policy import Policy
from b24app.crm.report import JobReport
from b24app.errors import UsageError
from b24app.rest.portal import Portal

KIND = "switch"


@dataclass(frozen=True)
class SwitchReport:
    """How a switch went: the conversion (None when none ran), and whether the portal was seen
    in the target mode before the timeout (`verified`), with the mode read last."""

    target: Mode
    conversion: JobReport | None
    verified: bool
    mode_after: Mode
    guide_text: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "target": self.target.label,
            "verified": self.verified,
            "mode_after": self.mode_after.label,
            "guide": self.guide_text,
            "conversion": self.conversion.to_dict() if self.conversion else None,
        }


def switch(
    portal: Portal,
    journal: JobJournal,
    target: Mode,
    policy: Policy,
    *,
    on_progress: ProgressCallback | None = None,
    wait: Callable[[float], None] = time.sleep,
    poll_timeout: float = 600.0,
    poll_interval: float = 5.0,
    on_step: Callable[[str], None] | None = None,
    variants: Mapping[str, str] | None = None,
) -> SwitchReport:
    """To Simple: convert every active lead, then tell the admin where the toggle is and poll
    crm.settings.mode.get until it reads Simple (or the timeout). To Classic: convert nothing.

    `on_step` gets each message for the admin as it happens (the guide among them). A conversion
    that is interrupted ends the switch there (no guide to flip yet): resume the job, then switch
    again. `variants`: what `b24app doctor` recorded for the portal (see `convert`).
    """
    if poll_interval <= 0 or poll_timeout < 0:
        raise UsageError("poll_interval must be above 0 and poll_timeout not below 0")
    say = on_step or (lambda text: None)
    current = read_mode(portal)
    if current == target:
        text = guide_switch(current, target).text()
        say(text)
        return SwitchReport(target, None, True, current, text)
    conversion = None
    notes: list[str] = []
    if target is Mode.SIMPLE:
        say(
            f"Converting the active leads first (policy: client {policy.client.value}, "
            f"pipeline {policy.pipeline}, activities {policy.activities.value})."
        )
        conversion = convert(
            portal, journal, policy, on_progress=on_progress, kind=KIND, variants=variants
        )
        if conversion.status == INTERRUPTED:
            text = (
                f"The conversion (job {conversion.job_id}) was interrupted: "
                f"{conversion.error}. Resume it, then run the switch again; do not flip the "
                "mode yet."
            )
            say(text)
            return SwitchReport(target, conversion, False, current, text)
        say(
            f"Converted {conversion.converted} lead(s); {conversion.failed} failed, "
            f"{conversion.skipped} skipped (job {conversion.job_id})."
        )
        if conversion.status != DONE:
            notes.append(
                f"Note: {conversion.failed} lead(s) could not be converted (see job "
                f"{conversion.job_id}); if you switch now, Bitrix24 converts them with "
                "its own default options."
            )
    guide = guide_switch(current, target, active_leads=conversion.converted if conversion else None)
    if conversion is not None and guide.convert_first:
        # The conversion step is done: the admin is not asked to convert leads again.
        guide = replace(guide, convert_first=False, steps=guide.steps[1:])
    text = "\n".join([guide.text(), *notes])
    say(text)
    verified, mode_after = _poll(
        portal, target, wait=wait, timeout=poll_timeout, interval=poll_interval
    )
    say(
        f"The portal now reports {mode_after.title}."
        if verified
        else f"The portal still reports {mode_after.title} after {poll_timeout:.0f} s; run the "
        "switch again once the toggle is flipped."
    )
    return SwitchReport(target, conversion, verified, mode_after, text)


def _poll(
    portal: Portal, target: Mode, *, wait: Callable[[float], None], timeout: float, interval: float
) -> tuple[bool, Mode]:
    """Read the mode every `interval` s until it is `target` or `timeout` s have been waited."""
    waited = 0.0
    while True:
        mode = read_mode(portal)
        if mode == target:
            return True, mode
        if waited >= timeout:
            return False, mode
        step = max(0.0, min(interval, timeout - waited))
        wait(step)
        waited += step
