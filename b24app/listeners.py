"""What the app does in the background for a portal: the auto-convert rule on lead events, the
sweep that catches what lost events missed, and the token keep-alive.

The rule (per portal, off by default, saved with the policy):

* Classic CRM: a lead added or updated is converted when `policy.auto.matches(lead, facts)` - it is
  active and in one of the rule's stages and sources (empty = any).
* Simple CRM: Bitrix24 converts leads itself; the ones it left as leads (still active, e.g. added
  through REST without a NAME) are converted whatever their stage.

Conversions go through `conversion.convert(..., kind="event"|"sweep")`, so the journal makes them
exactly-once: a duplicate event, an event and a sweep, or two workers converting the same lead
create nothing twice. The policy's own lead selection (stages, sources, dates) is for the app
page's "convert all" and does not filter these runs; the rule decides. A portal whose conversion
job is running raises JobBusy: the task is retried later, never dropped.

Events carry only a lead id and Bitrix24 never redelivers one, so `sweep_portal` runs every
B24APP_SWEEP_MINUTES: it records the portal's mode (a change lands in the installation history),
lists the active leads modified since the last sweep minus `SWEEP_MARGIN`, adds the leads from
the portal's offline event queue where the portal grants one (admin installs), and converts those
the rule picks.

Coalescing (issue 16): the leads events and sweeps bring in are not converted one job each. They
are *gathered* (`gather`) into the portal's open automatic job - one job record, pending, whose
lead list grows - and that job runs once its window (B24APP_EVENT_WINDOW) has passed or it holds a
full batch (B24APP_EVENT_BATCH), under the portal's policy with the rule as its lead selection, so
the conversion reads the portal's facts and the leads once per batch (`b24app.turns`,
`b24app.jobs`). Deciding to gather costs no REST request: the journal answers the app's own
changes echoing back (a lead converted, or underway in a job); the CRM mode, which only matters
when the rule names stages or sources, is the one last recorded unless that is older than
`MODE_FRESH`. A lead that arrives while its portal's automatic job runs is gathered into a new
pending job, which the running one absorbs when it needs more leads (`Journal.absorb`): it joins
the running job's next batch, and the burst stays one job record.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from typing import Any

from b24app.crm import changes, conversion
from b24app.crm.facts import PortalFacts
from b24app.crm.journal import AUTO_KINDS, JobStatus, LeadStatus
from b24app.crm.mode import Mode, ModeError
from b24app.crm.policy import LeadSelection, Policy, PolicyError
from b24app.crm.reader import Reader
from b24app.errors import B24Error
from b24app.services import Services
from b24app.store.db import utc_now
from b24app.vocabulary import LEAD_EVENTS

log = logging.getLogger("b24app.jobs")

# Leads modified this long before the last sweep are listed again (clock skew, slow commits).
SWEEP_MARGIN = dt.timedelta(minutes=10)
# The recorded CRM mode is trusted this long for the rule's lead selection; older, it is read
# again. Every conversion batch checks the mode itself (a switch during a job is handled there).
MODE_FRESH = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Outcome:
    """What an event or a sweep did for a portal; `job_id`/`status` when a job ran."""

    member_id: str
    action: str  # converted | skipped | failed | swept
    reason: str = ""
    job_id: int | None = None
    status: str | None = None
    converted: int = 0
    leads: tuple[int, ...] = ()


def should_convert(mode: Mode, policy: Policy, lead: Any, facts: PortalFacts) -> bool:
    """The auto-convert rule for one lead as read (see the module doc)."""
    if not policy.auto.enabled:
        return False
    if mode is Mode.SIMPLE:
        return facts.is_active(lead)
    return policy.auto.matches(lead, facts)


def load_policy(services: Services, member_id: str) -> Policy:
    """The portal's saved policy (defaults when none was saved); PolicyError if it is unreadable."""
    return Policy.from_dict(services.portal_settings.policy_data(member_id) or {})


def _rule_policy(policy: Policy) -> Policy:
    """The policy for a rule-driven run: the rule picked the leads, not the page's selection."""
    return replace(policy, leads=LeadSelection())


def _active(services: Services, member_id: str) -> bool:
    found = services.installations.get_installation(member_id)
    return found is not None and found.active


def _mode(services: Services, member_id: str, client: Any) -> Mode:
    mode = conversion.read_mode(client)
    previous = services.portal_settings.record_mode(member_id, mode.label)
    if previous is not None:
        log.info("portal %s switched CRM mode: %s -> %s", member_id, previous, mode.label)
    return mode


def event_precheck(
    services: Services, member_id: str, *, lead_id: int, event: str
) -> Outcome | Policy:
    """What can be decided about an event without calling the portal: the Outcome when nothing
    is to be done, else the portal's policy. Bitrix24 also sends ONCRMLEADUPDATE for the app's
    own conversions; the journal answers those without a request."""
    if event.upper() not in LEAD_EVENTS:
        return Outcome(member_id, "skipped", f"{event} is not a lead add/update event")
    if not _active(services, member_id):
        return Outcome(member_id, "skipped", "the portal is not an active installation")
    try:
        policy = load_policy(services, member_id)
    except PolicyError as exc:
        log.warning("portal %s: saved policy unreadable: %s", member_id, exc)
        return Outcome(member_id, "failed", "the saved policy is unreadable")
    if not policy.auto.enabled:
        return Outcome(member_id, "skipped", "auto-convert is off")
    known = services.journal(member_id).states([lead_id]).get(lead_id)
    if known is not None and known.status == LeadStatus.CONVERTED:
        return Outcome(
            member_id, "skipped", f"already converted by job {known.job_id}", leads=(lead_id,)
        )
    if known is not None and known.status == LeadStatus.CREATING:
        # Underway in a job (its closing call echoing back, most often): that job, or the
        # recovery of it, finishes the lead.
        return Outcome(member_id, "skipped", f"underway in job {known.job_id}", leads=(lead_id,))
    return policy


@dataclass(frozen=True)
class Gathered:
    """Leads added to the portal's open automatic job: `added` the ones it did not hold yet,
    `size` how many it holds now, `created` whether the job was opened by this call."""

    member_id: str
    job_id: int
    added: tuple[int, ...]
    size: int
    created: bool


def rule_selection(policy: Policy, mode: Mode | None) -> Policy:
    """The policy an automatic job runs with: the rule picks its leads (Classic: the rule's
    stages and sources; Simple: every lead Bitrix24 left active), the page's selection does not.
    The conversion skips inactive leads itself."""
    if mode is Mode.SIMPLE or not policy.auto.enabled:
        return replace(policy, leads=LeadSelection())
    return replace(
        policy, leads=LeadSelection(stages=policy.auto.stages, sources=policy.auto.sources)
    )


def known_mode(
    services: Services, member_id: str, policy: Policy, *, now: dt.datetime | None = None
) -> Mode | None:
    """The CRM mode the rule's selection depends on: None when it does not (the rule names no
    stage or source), else the one last recorded if fresher than MODE_FRESH, else read now."""
    if not (policy.auto.stages or policy.auto.sources):
        return None
    label, at = services.portal_settings.observed_mode(member_id)
    if label and at is not None and (now or utc_now()) - at < MODE_FRESH:
        try:
            return Mode.from_label(label)
        except ModeError:
            pass  # unreadable: read it again
    client = services.client(member_id)
    try:
        return _mode(services, member_id, client)
    finally:
        client.close()


def gather(
    services: Services,
    member_id: str,
    lead_ids: list[int],
    *,
    kind: str,
    policy: Policy,
    mode: Mode | None,
) -> Gathered | Outcome:
    """Add leads the rule should look at to the portal's open automatic job (a new pending job
    of `kind` when none is open); an Outcome when none is left (converted, or underway)."""
    journal = services.journal(member_id)
    known = journal.states(lead_ids)
    fresh = [
        i
        for i in dict.fromkeys(lead_ids)
        if (found := known.get(i)) is None
        or found.status not in (LeadStatus.CONVERTED, LeadStatus.CREATING)
    ]
    if not fresh:
        return Outcome(member_id, "skipped", "converted or underway already", leads=tuple(lead_ids))
    job, added, created = journal.gather(
        kind=kind,
        policy=rule_selection(policy, mode).to_dict(),
        lead_ids=fresh,
        kinds=AUTO_KINDS,
    )
    return Gathered(member_id, job.id, added, len(job.lead_ids or ()), created)


def gather_from_event(
    services: Services, member_id: str, *, lead_id: int, event: str
) -> Gathered | Outcome:
    """What a verified ONCRMLEADADD/UPDATE does now: the lead joins the portal's open automatic
    job, or nothing happens (rule off, converted, underway, not an active installation). No REST
    request unless the rule names stages or sources and the recorded mode is stale."""
    policy = event_precheck(services, member_id, lead_id=lead_id, event=event)
    if isinstance(policy, Outcome):
        return policy
    mode = known_mode(services, member_id, policy)
    return gather(services, member_id, [lead_id], kind="event", policy=policy, mode=mode)


def convert_from_event(services: Services, member_id: str, *, lead_id: int, event: str) -> Outcome:
    """Apply the auto-convert rule to the lead a verified ONCRMLEADADD/UPDATE named.

    Raises JobBusy when another conversion of the portal is running (retry later); portal errors
    propagate (the task fails, the sweep catches the lead later).
    """
    policy = event_precheck(services, member_id, lead_id=lead_id, event=event)
    if isinstance(policy, Outcome):
        return policy
    client = services.client(member_id)
    try:
        mode = _mode(services, member_id, client)
        reader = Reader(client)
        facts = reader.facts((policy.pipeline,))
        leads = [lead for chunk in reader.leads_by_id([lead_id]).chunks() for lead in chunk]
        if not leads:
            return Outcome(member_id, "skipped", "lead not found", leads=(lead_id,))
        if not should_convert(mode, policy, leads[0], facts):
            return Outcome(member_id, "skipped", "the rule does not pick it", leads=(lead_id,))
        return _convert(services, member_id, client, policy, [lead_id], kind="event")
    finally:
        client.close()


def _convert(
    services: Services,
    member_id: str,
    client: Any,
    policy: Policy,
    lead_ids: list[int],
    *,
    kind: str,
) -> Outcome:
    try:
        report = conversion.convert(
            client,
            services.journal(member_id),
            _rule_policy(policy),
            lead_ids=lead_ids,
            kind=kind,
            max_leads=services.settings.slice_leads,
            variants=services.variants(member_id),
        )
    except PolicyError as exc:  # the policy does not fit the portal (e.g. a pipeline was deleted)
        log.warning("portal %s: policy does not fit the portal: %s", member_id, exc)
        return Outcome(member_id, "failed", str(exc), leads=tuple(lead_ids))
    return Outcome(
        member_id,
        "converted" if report.status != "interrupted" else "failed",
        report.error or "",
        job_id=report.job_id,
        status=report.status,
        converted=report.converted,
        leads=tuple(lead_ids),
    )


def sweep_portal(
    services: Services,
    member_id: str,
    *,
    now: dt.datetime | None = None,
    margin: dt.timedelta = SWEEP_MARGIN,
    gathering: bool = False,
) -> Outcome:
    """Record the portal's mode and convert the leads the rule should have caught since the
    last sweep; mark the portal swept (not when it failed: the next sweep looks further back).
    `gathering`: add them to the portal's open automatic job instead (the Outcome names it,
    status pending: the caller runs it).

    Raises JobBusy when another conversion of the portal is running.
    """
    now = now or utc_now()
    settings_store = services.portal_settings
    if not _active(services, member_id):
        return Outcome(member_id, "skipped", "the portal is not an active installation")
    client = services.client(member_id)
    try:
        mode = _mode(services, member_id, client)
        try:
            policy = load_policy(services, member_id)
        except PolicyError as exc:
            log.warning("portal %s: saved policy unreadable: %s", member_id, exc)
            return Outcome(member_id, "failed", "the saved policy is unreadable")
        if not policy.auto.enabled:
            settings_store.mark_swept(member_id, now)
            return Outcome(member_id, "swept", "auto-convert is off")
        offline = _offline(services, member_id, client)
        reader = Reader(client)
        facts = reader.facts((policy.pipeline,))
        since = _since(services, member_id, now) - margin
        candidates = {
            int(lead["ID"]): lead for lead in changes.changed_active_leads(client, facts, since)
        }
        queued = [i for i in (offline.lead_ids if offline else ()) if i not in candidates]
        if queued:
            for chunk in reader.leads_by_id(queued).chunks():
                candidates.update((int(lead["ID"]), lead) for lead in chunk)
        wanted = sorted(
            i for i, lead in candidates.items() if should_convert(mode, policy, lead, facts)
        )
        outcome = Outcome(member_id, "swept", f"{len(candidates)} changed lead(s) checked")
        if wanted and gathering:
            found = gather(services, member_id, wanted, kind="sweep", policy=policy, mode=mode)
            if isinstance(found, Gathered):
                outcome = Outcome(
                    member_id,
                    "swept",
                    f"{len(found.added)} lead(s) added to job {found.job_id}",
                    job_id=found.job_id,
                    status=JobStatus.PENDING,
                    leads=tuple(wanted),
                )
        elif wanted:
            outcome = _convert(services, member_id, client, policy, wanted, kind="sweep")
        if offline is not None:
            changes.clear_offline(client, offline.process_id)
        if outcome.action != "failed":
            settings_store.mark_swept(member_id, now)
        log.info("portal %s swept: %d to convert", member_id, len(wanted))
        return outcome
    finally:
        client.close()


def _since(services: Services, member_id: str, now: dt.datetime) -> dt.datetime:
    """Where the sweep starts: the last sweep, else when the policy was saved, else now."""
    last = services.portal_settings.last_swept(member_id)
    if last is not None:
        return last
    _, saved_at = services.portal_settings.policy_saved_by(member_id)
    return saved_at or now


def _offline(services: Services, member_id: str, client: Any) -> changes.OfflineLeads | None:
    if member_id not in services.offline_ready:
        if not changes.bind_offline_lead_events(client):
            return None
        services.offline_ready.add(member_id)
    return changes.take_offline_leads(client)


def keep_alive(
    services: Services, member_id: str, *, max_age: dt.timedelta, now: dt.datetime | None = None
) -> bool:
    """Refresh the portal's tokens when they were last rotated `max_age` ago, so a portal the app
    rarely calls keeps a live refresh token; True when a refresh happened (here or, at the same
    moment, in another process - the refresh is serialized per portal).

    https://apidocs.bitrix24.com/settings/oauth/auto-renewal.html
    """
    now = now or utc_now()
    found = services.installations.get_installation(member_id)
    if found is None or not found.active:
        return False
    rotated = found.refreshed_at or found.installed_at
    if rotated is not None and now - rotated < max_age:
        return False
    try:
        services.tokens(member_id).refresh(found.access_token)
    except B24Error as exc:  # the installation is marked (reinstall needed, deleted, unpaid)
        log.warning("portal %s: keep-alive refresh failed (%s)", member_id, exc.code)
        return False
    log.info("portal %s: tokens refreshed by the keep-alive", member_id)
    return True
