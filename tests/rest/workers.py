"""Code run in child processes by the multi-process tests (importable, so `spawn` finds it)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

from b24app.config import RateLimit, Settings
from b24app.rest import Command, PortalClient
from b24app.services import installation_client
from b24app.store.crypto import Cipher
from b24app.store.db import make_engine
from b24app.store.installations import InstallationStore


def refresh_race(
    db_url: str,
    key: str,
    settings: dict[str, Any],
    member_id: str,
    threads: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One process: warm a client, then on `go` call the portal from `threads` threads at once
    (the tokens have expired meanwhile); report ("ok", n) or ("error", text) per thread."""
    try:
        store = InstallationStore(make_engine(db_url), Cipher(key))
        client = installation_client(store, member_id, settings=Settings(**settings))
        client.call("profile")
    except Exception:
        results.put(("error", traceback.format_exc()))
        ready.put(False)
        return
    ready.put(True)
    go.wait(60)
    barrier = threading.Barrier(threads)

    def work() -> None:
        try:
            barrier.wait(30)
            rows = client.call("crm.lead.list", {"select": ["ID"]}).result
            results.put(("ok", len(rows)))
        except Exception:
            results.put(("error", traceback.format_exc()))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def shared_bucket_writer(
    webhook_url: str,
    redis_url: str | None,
    per_second: float,
    burst: int,
    batches: int,
    tag: str,
    results: Any,
    ready: Any,
    go: Any,
) -> None:
    """One process adding `batches` x 50 leads through a client whose bucket lives in Redis (or
    its own, `redis_url` None); reports ("ok", results, errors, requests, 503s met). It
    says `ready` once set up and starts writing on `go`, so the writers start together however
    long each took to spawn."""
    try:
        client = PortalClient.from_webhook(
            webhook_url, rate=RateLimit(per_second, burst), redis_url=redis_url
        )
        commands = [
            Command(
                f"{tag}{i}",
                "crm.lead.add",
                {"fields": {"TITLE": f"{tag} {i}", "ORIGIN_ID": f"{tag}-{i}"}},
            )
            for i in range(batches * 50)
        ]
        ready.put(True)
        go.wait(60)
        result = client.batch_many(commands)
        results.put(
            (
                "ok",
                len(result.results),
                len(result.errors),
                client.requests_made,
                client.requests_refused,
            )
        )
    except Exception:
        results.put(("error", traceback.format_exc()))
