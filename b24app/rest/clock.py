"""Time as a seam: the client reads clocks and sleeps only through a `Clock`; tests never wait."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (unix seconds, compared with Bitrix24's `operating_reset_at`), a monotonic
    clock for intervals, and sleep."""

    def now(self) -> float:
        """Unix time in seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Unix time in seconds."""
        return time.time()

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep(), ignoring non-positive values."""
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
