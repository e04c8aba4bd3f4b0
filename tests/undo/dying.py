"""A worker process dying mid-undo, in-process: a portal client that raises `Died` (which nothing
of the run catches) right after the portal answered a chosen batch, and the dead owner the
journal then finds on the undo job."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, update

from b24app.store.journal import RUNNING
from b24app.store.journal import jobs as jobs_table


class Died(BaseException):
    """The process dying (not an Exception: the run's handlers do not see it)."""


class DyingClient:
    """Sends every batch; raises `Died` after the first one `dies(commands)` picks, if `armed`.
    `sent` holds the commands of every batch, in order."""

    def __init__(
        self, client: Any, dies: Callable[[Sequence[Any]], bool], *, armed: bool = True
    ) -> None:
        self.client = client
        self.dies = dies
        self.armed = armed
        self.sent: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def batch(self, commands: Sequence[Any], **kwargs: Any) -> Any:
        """Send; die afterwards if this is the batch."""
        result = self.client.batch(commands, **kwargs)
        self.sent += list(commands)
        if self.armed and self.dies(commands):
            self.armed = False
            raise Died
        return result


def owner_died(engine: Engine) -> None:
    """The running jobs belong to a process that is gone (as after a kill -9)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    with engine.begin() as conn:
        conn.execute(
            update(jobs_table)
            .where(jobs_table.c.status == RUNNING)
            .values(owner=f"{dead.pid}@{socket.gethostname()}")
        )
