"""fast-bitrix24, a real third-party client, works against the sandbox webhook, limits included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponseError
from fast_bitrix24 import Bitrix, BitrixAsync

from sandbox.server import Sandbox

SEEDED = 230  # five pages of 50


@pytest.fixture(autouse=True)
def _quiet_client() -> Iterator[None]:
    # fast-bitrix24 logs whole payloads at INFO.
    logger = logging.getLogger("fast_bitrix24")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("fb24") / "portal.db"
    with Sandbox(plan="fast", seed_leads=SEEDED, seed=5, db=str(path)) as running:
        yield running


def test_get_all_reads_every_page(portal: Sandbox) -> None:
    before = portal.stats()["http_requests"]
    leads = Bitrix(portal.webhook_url, verbose=False).get_all(
        "crm.lead.list", {"select": ["ID", "TITLE"]}
    )
    ids = sorted(int(lead["ID"]) for lead in leads)
    assert ids == list(range(1, SEEDED + 1))
    # One request for page 1 (and the total), then the other pages batched.
    assert portal.stats()["http_requests"] - before < SEEDED // 50


def test_call_batches_adds(portal: Sandbox) -> None:
    client = Bitrix(portal.webhook_url, verbose=False)
    before = portal.portal.counts()["lead"]
    items = [{"fields": {"TITLE": f"FB24 lead {i}", "NAME": f"Client{i}"}} for i in range(60)]
    created = client.call("crm.lead.add", items)
    assert len(created) == 60
    assert portal.portal.counts()["lead"] == before + 60
    titles = {
        lead["TITLE"]
        for lead in client.get_all(
            "crm.lead.list", {"filter": {">ID": before}, "select": ["ID", "TITLE"]}
        )
    }
    assert titles == {item["fields"]["TITLE"] for item in items}


def test_call_batch_chains_results(portal: Sandbox) -> None:
    client = Bitrix(portal.webhook_url, verbose=False)
    result: dict[str, Any] = client.call_batch(
        {
            "halt": 0,
            "cmd": {
                "add": "crm.lead.add?fields[TITLE]=Chained%20by%20fast-bitrix24",
                "get": "crm.lead.get?id=$result[add]",
                "page": "crm.lead.list?filter[>ID]=$result[add]&select[]=ID",
            },
        }
    )
    assert result["get"]["TITLE"] == "Chained by fast-bitrix24"
    assert result["get"]["ID"] == str(result["add"])
    assert result["page"] == []


class _FrozenClock:
    """Time stands still for the sandbox: the bucket never drains during the test."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def _root_status(error: BaseException) -> int | None:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ClientResponseError):
            return cause.status
        cause = cause.__cause__
    return None


def test_bursting_past_the_standard_plan_gets_503s(tmp_path: Path) -> None:
    async def burst(webhook: str) -> list[BaseException]:
        # Client-side throttling opened wide: the portal is the one to say no.
        client = BitrixAsync(
            webhook, verbose=False, requests_per_second=1000.0, request_pool_size=1000
        )
        tasks = [asyncio.ensure_future(client.call("profile", {}, raw=True)) for _ in range(60)]
        done, pending = await asyncio.wait(tasks, timeout=60, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [e for t in done if (e := t.exception()) is not None]

    with Sandbox(plan="standard", clock=_FrozenClock(), db=str(tmp_path / "p.db")) as portal:
        errors = asyncio.run(burst(portal.webhook_url))
        stats = portal.stats()
    # The bucket took exactly its burst of 50; every other attempt was a 503 QUERY_LIMIT_EXCEEDED,
    # which fast-bitrix24 retried until its retry budget ran out.
    assert stats["sub_calls"] == {"profile": 50}
    assert stats["query_limit_exceeded"] >= 11
    assert stats["statuses"]["503"] == stats["query_limit_exceeded"]
    assert errors
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert {_root_status(e) for e in errors} == {503}
