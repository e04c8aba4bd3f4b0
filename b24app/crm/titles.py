"""Lead titles for the app page's links: one batch of `crm.lead.list` pages by id.

`crm.lead.list` answers at most 50 rows per page (https://apidocs.bitrix24.com/api-reference/crm/leads/crm-lead-list.html)
and a batch holds at most 50 commands (https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html),
so up to 2,500 titles cost one request. Titles are the portal's data: shown to its own users,
never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from b24app.crm.mapping import link_id
from b24app.rest.command import Command
from b24app.vocabulary import MAX_BATCH as MAX_COMMANDS
from b24app.vocabulary import PAGE_SIZE as PAGE


def title_commands(lead_ids: Sequence[int]) -> tuple[Command, ...]:
    """The commands reading the titles of `lead_ids` (at most PAGE * MAX_COMMANDS of them)."""
    ids = sorted(set(lead_ids))[: PAGE * MAX_COMMANDS]
    return tuple(
        Command(
            f"t{start // PAGE}",
            "crm.lead.list",
            {"filter": {"@ID": ids[start : start + PAGE]}, "select": ["ID", "TITLE"]},
        )
        for start in range(0, len(ids), PAGE)
    )


def parse_titles(results: dict[str, Any]) -> dict[int, str]:
    """{lead id: title} from the batch's results (rows without an id or title left out)."""
    titles: dict[int, str] = {}
    for rows in results.values():
        for row in rows if isinstance(rows, list) else []:
            lead_id = link_id(row.get("ID")) if isinstance(row, dict) else None
            title = str(row.get("TITLE") or "").strip() if lead_id is not None else ""
            if lead_id is not None and title:
                titles[lead_id] = title
    return titles


def lead_titles(portal: Any, lead_ids: Sequence[int]) -> dict[int, str]:
    """{lead id: title} for `lead_ids` (deleted leads are simply missing): one request."""
    commands = title_commands(lead_ids)
    if not commands:
        return {}
    result = portal.batch(commands, halt=False, idempotent=True)
    return parse_titles(dict(result.results))
