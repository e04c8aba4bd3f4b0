"""CPU load for a chaos run: busy-loop processes competing with the app's for the machine's cores.

A stall that shows only when the workers are starved of CPU (a slow takeover racing a timer, a
lock renewed late) needs a busy machine to show up; `--cpu-load K` makes one on purpose.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

# A child interpreter that spins until it is killed.
SPIN = ("-c", "while True: pass")


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[tuple[int, ...]]:
    """Run `processes` busy loops for the block's duration; yields their pids."""
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(processes):
            hogs.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and a fixed program
                    [sys.executable, *SPIN],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield tuple(hog.pid for hog in hogs)
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
