"""Totals the app page puts into words: what a preview would do, what a finished job did."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from b24app.crm.journal import LeadStatus
from b24app.crm.planner import COMPANY, CONTACT, DEAL, LeadPreview
from b24app.crm.report import JobReport


@dataclass(frozen=True)
class PreviewTotals:
    """What converting the previewed leads would do, summed over every lead."""

    leads: int = 0  # leads the preview lists
    convert: int = 0  # of them, leads that would be converted
    skip: int = 0
    deals: int = 0
    contacts: int = 0  # created
    companies: int = 0
    reused_contacts: int = 0
    reused_companies: int = 0
    moved: int = 0  # open activities moved to the deal
    completed: int = 0  # open activities completed
    product_rows: int = 0

    @classmethod
    def of(cls, rows: Iterable[LeadPreview]) -> PreviewTotals:
        """The totals of a preview."""
        totals = dict.fromkeys(cls.__dataclass_fields__, 0)
        for row in rows:
            totals["leads"] += 1
            if row.skip:
                totals["skip"] += 1
                continue
            totals["convert"] += 1
            totals["deals"] += DEAL in row.create
            totals["contacts"] += CONTACT in row.create
            totals["companies"] += COMPANY in row.create
            totals["reused_contacts"] += CONTACT in row.reuse
            totals["reused_companies"] += COMPANY in row.reuse
            totals["moved"] += len(row.move)
            totals["completed"] += len(row.complete)
            totals["product_rows"] += row.product_rows
        return cls(**totals)


@dataclass(frozen=True)
class JobTotals:
    """What a job did: leads by outcome and the distinct deals, contacts, companies they got."""

    converted: int
    failed: int
    skipped: int
    unfinished: int
    deals: int
    contacts: int
    companies: int

    @classmethod
    def of(cls, report: JobReport) -> JobTotals:
        """The totals of a job's report (clients shared by several leads count once)."""
        done = [lead for lead in report.leads if lead.status == LeadStatus.CONVERTED]
        return cls(
            converted=report.converted,
            failed=report.failed,
            skipped=report.skipped,
            unfinished=sum(lead.status == LeadStatus.PENDING for lead in report.leads),
            deals=len({lead.deal_id for lead in done if lead.deal_id}),
            contacts=len({lead.contact_id for lead in done if lead.contact_id}),
            companies=len({lead.company_id for lead in done if lead.company_id}),
        )
