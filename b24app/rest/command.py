"""One REST call as a value: what the planner produces and `batch` sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """A REST method call with a key unique within its batch, so later commands can refer to it."""

    key: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def ref(self, *path: str | int) -> str:
        """`$result[key][p1][p2]...`: a reference to this command's result inside the same batch.

        https://apidocs.bitrix24.com/settings/how-to-call-rest-api/batch.html
        """
        return f"$result[{self.key}]" + "".join(f"[{p}]" for p in path)
