"""Fresh plans for a chunk of listed leads: what a conversion run (and its preview) does with a
lead the journal has nothing for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from b24app import messages as msg
from b24app.crm.facts import PortalFacts
from b24app.crm.journal import LeadEntry
from b24app.crm.mapping import link_id
from b24app.crm.planner import COMPANY, CONTACT, LeadPlan, PlanError, Surroundings, plan_lead
from b24app.crm.policy import Policy
from b24app.crm.reader import Reader
from b24app.crm.scheduler import Status


def plan_chunk(
    reader: Reader,
    leads: Sequence[Mapping[str, Any]],
    *,
    policy: Policy,
    facts: PortalFacts,
    files: bool = True,
) -> list[LeadPlan | LeadEntry]:
    """Fresh plans for these leads (reads their extras); LeadEntry(failed) for unplannable ones.
    `files`: download the custom-field files the plans carry (not for a preview).

    Leads the policy's selection does not pick (its stages, sources, dates: the ids were applied
    when reading), and inactive ones, get a skipped plan and no reads.
    """
    selection = replace(policy.leads, ids=())
    out: list[LeadPlan | LeadEntry] = []
    success = facts.success_stage
    wanted = []
    for lead in leads:
        lead_id = link_id(lead.get("ID"))
        if lead_id is None:
            continue
        if not selection.selects(lead):
            out.append(
                LeadPlan(
                    lead_id=lead_id,
                    skip=msg.SKIP_NOT_SELECTED,
                    success_stage=success,
                )
            )
        elif not facts.is_active(lead):
            out.append(plan_lead(lead, policy=policy, facts=facts))
        else:
            wanted.append((lead_id, lead))
    if not wanted:
        return out
    ids = [lead_id for lead_id, _ in wanted]
    extras = reader.extras([lead for _, lead in wanted], policy, origins=ids)
    for lead_id, lead in wanted:
        match = extras.matches.get(lead_id)
        clients = {
            name: client
            for name in (COMPANY, CONTACT)
            if (
                client := link_id(lead.get(f"{name.upper()}_ID"))
                or (getattr(match, f"{name}_id") if match else None)
            )
        }
        around = Surroundings(
            activities=extras.activities.get(lead_id, ()),
            comments=extras.comments.get(lead_id, ()),
            product_rows=extras.product_rows.get(lead_id, ()),
            match=match,
            known=extras.created.get(lead_id) or {},
            contacts=extras.contacts.get(lead_id, ()),
            requisites={
                name: found
                for name, client in clients.items()
                if (found := extras.requisites.get((name, client)))
            },
            clients={
                name: extras.clients[(name, client)]
                for name, client in clients.items()
                if (name, client) in extras.clients
            },
            custom=reader.custom_fields,
        )
        try:
            plan = plan_lead(lead, policy=policy, facts=facts, around=around)
            out.append(reader.fill_files(plan) if files else plan)
        except (PlanError, ValueError) as exc:
            out.append(
                LeadEntry(
                    lead_id=lead_id,
                    status=Status.FAILED,
                    error=msg.FAIL_UNPLANNABLE.format(error=exc),
                )
            )
    return out
