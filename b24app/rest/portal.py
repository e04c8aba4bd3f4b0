"""The seam the domain code depends on: what it needs from a Bitrix24 portal client."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from b24app.rest.command import Command
from b24app.rest.listing import ListShape
from b24app.rest.response import BatchResult, Response


class Portal(Protocol):
    """A Bitrix24 portal as `b24app.crm` sees it; `PortalClient` is the real one."""

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far."""
        ...

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool | None = None,
    ) -> Response:
        """Call one method."""
        ...

    def batch(
        self, commands: Sequence[Command], *, halt: bool = False, idempotent: bool | None = None
    ) -> BatchResult:
        """Run up to 50 commands in one request."""
        ...

    def batch_many(
        self, commands: Sequence[Command], *, halt: bool = False, idempotent: bool | None = None
    ) -> BatchResult:
        """Run any number of independent commands, 50 per request."""
        ...

    def iterate(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        shape: ListShape | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a list method."""
        ...
