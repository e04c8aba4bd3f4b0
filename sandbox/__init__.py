"""A local Bitrix24 cloud portal: the REST subset b24app uses, OAuth, events, limits and faults.

It behaves as the Bitrix24 docs say Bitrix24 behaves, inconvenient parts included. It stands
alone: nothing here imports b24app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import Sandbox

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a core module (sandbox.portal) does not start up the server side.
    if name == "Sandbox":
        from sandbox.server import Sandbox

        return Sandbox
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
