"""b24app against both readings of each knob the sandbox has for issue 13 (docs/sandbox.md).

Where the docs and Bitrix24's server code disagree and no recording settles it, b24app must work
with either reading.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from b24app.config import PLANS, RateLimit
from b24app.crm.policy import Policy
from b24app.crm.reader import Reader
from b24app.errors import AuthError, hint
from b24app.rest import PortalClient, RetryPolicy
from sandbox import Sandbox
from sandbox.portal import CallContext

FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def client(url: str) -> PortalClient:
    return PortalClient.from_webhook(
        url, rate=RateLimit(*PLANS["fast"]), retry=FAST_RETRY, timeout=10.0
    )


@pytest.fixture(params=["code", "docs"])
def reading(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def portal(reading: str) -> Iterator[Sandbox]:
    knobs = {"productrow_owner_arrays": reading, "webhook_auth_error": reading}
    with Sandbox(plan="fast", seed_leads=60, seed=3, knobs=knobs) as running:
        yield running


def test_reader_gets_every_leads_product_rows(portal: Sandbox, reading: str) -> None:
    """productrow_owner_arrays: `code` lists the rows of many leads in one command
    (crm/lib/controller/item/productrow.php:367-399); `docs` refuses the array and b24app reads
    one lead per command."""
    core = portal.portal
    ctx_rows = {}
    leads = core.dispatch("crm.lead.list", {"select": ["*"]}, _admin()).result
    for lead in leads:
        rows = core.dispatch("crm.lead.productrows.get", {"id": lead["ID"]}, _admin()).result
        ctx_rows[int(lead["ID"])] = len(rows)
    reader = Reader(client(portal.webhook_url))

    extras = reader.extras(leads, Policy())

    assert {i: len(r) for i, r in extras.product_rows.items()} == {
        i: n for i, n in ctx_rows.items() if n
    }
    assert reader.rows_per_lead is (reading == "docs")


def test_a_wrong_webhook_code_gets_a_hint_to_copy_the_url_again(
    portal: Sandbox, reading: str
) -> None:
    """webhook_auth_error: `code` answers INVALID_CREDENTIALS (rest/lib/apauth/auth.php:131-135),
    `docs` NO_AUTH_FOUND; either way the person is told to copy the webhook URL again."""
    wrong = client(portal.webhook_url.replace(portal.webhook_code, "guessed"))
    with pytest.raises(AuthError) as caught:
        wrong.call("crm.settings.mode.get")
    expected = "INVALID_CREDENTIALS" if reading == "code" else "NO_AUTH_FOUND"
    assert caught.value.code == expected
    assert "B24_WEBHOOK_URL" in (hint(caught.value) or "")


def _admin() -> CallContext:
    return CallContext()
