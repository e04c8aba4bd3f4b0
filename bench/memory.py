"""Bench: peak memory of `b24app convert` converting 100,000 leads (goal: under 300 MB).

The sandbox portal runs in its own process (`b24app sandbox`, fast plan), so its memory is not
counted. The conversion is the CLI as a user runs it (`b24app convert --client both
--activities move`, a SQLite journal) in a child process; its peak is the kernel's RSS
high-water mark of that process (`VmHWM`, read by the child as it exits), interpreter and
imports included. Afterwards the journal must say every active lead converted and none failed.

    python -m bench.memory                  # 100,000 leads (about 8 minutes on 2 cores)
    python -m bench.memory --leads 1000     # the quick run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.floors import ratio
from bench.table import figure, print_table

GOAL_MB = 300.0
LEADS, QUICK_LEADS = 100_000, 1_000
PLAN = "fast"
SANDBOX = ("-c", "from sandbox.cli import sandbox; sandbox()")
# The CLI, writing its own RSS high-water mark (VmHWM, kB) to $BENCH_PEAK_FILE at exit. VmHWM
# belongs to the process image since exec; ru_maxrss would also count the bench process's pages
# the child held between fork and exec.
CLI = (
    "-c",
    "import atexit, os\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as status:\n"
    "        kb = next(line.split()[1] for line in status if line.startswith('VmHWM:'))\n"
    "    with open(os.environ['BENCH_PEAK_FILE'], 'w') as out:\n"
    "        out.write(kb)\n"
    "atexit.register(_peak)\n"
    "from b24app.cli import main\n"
    "main()\n",
)


@dataclass(frozen=True)
class Peak:
    """One measured conversion: the child's RSS high-water mark and what the journal says."""

    leads: int
    peak_mb: float
    seconds: float
    exit_code: int
    status: str
    converted: int
    failed: int
    requests: int

    @property
    def ok(self) -> bool:
        """The conversion finished with every lead converted and none failed."""
        return self.exit_code == 0 and self.status == "done" and self.failed == 0


def start_sandbox(tmp: Path, *, leads: int, seed: int = 1) -> tuple[subprocess.Popen, dict]:
    """`b24app sandbox` in a child process; (process, its info JSON) once it listens."""
    info_file = tmp / "sandbox.json"
    process = subprocess.Popen(
        [
            sys.executable,
            *SANDBOX,
            "--port",
            "0",
            "--seed-leads",
            str(leads),
            "--seed",
            str(seed),
            "--plan",
            PLAN,
            "--info-file",
            str(info_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not (info_file.exists() and info_file.stat().st_size):
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited: {process.stderr.read()[-500:]}")
        if time.monotonic() > deadline:
            stop(process)
            raise RuntimeError("the sandbox did not start within 10 minutes")
        time.sleep(0.2)
    time.sleep(0.1)  # the file is written in one go; let it be flushed
    return process, json.loads(info_file.read_text(encoding="utf-8"))


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the sandbox CLI stops cleanly on it), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_child(argv: Sequence[str], *, env: dict[str, str], log: Path) -> tuple[int, float, float]:
    """Run the CLI child to its end; (exit code, its peak RSS in MB, seconds)."""
    peak_file = log.with_suffix(".peak")
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.call(
            argv,
            env={**env, "BENCH_PEAK_FILE": str(peak_file)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.monotonic() - started
    kb = float(peak_file.read_text()) if peak_file.exists() else float("nan")
    return code, kb / 1024, seconds


def measure(leads: int, *, seed: int = 1) -> Peak:
    """Seed a sandbox in its own process and convert every active lead in a child process."""
    from b24app.rest.auth import WebhookAuth
    from b24app.store.journal import Journal

    with tempfile.TemporaryDirectory(prefix="b24app-memory-") as tmp_name:
        tmp = Path(tmp_name)
        sandbox, info = start_sandbox(tmp, leads=leads, seed=seed)
        try:
            db_url = f"sqlite:///{tmp / 'journal.db'}"
            env = {
                **os.environ,
                "B24_WEBHOOK_URL": info["webhook_url"],
                "B24APP_PLAN": PLAN,
                "B24APP_DATABASE_URL": db_url,
            }
            code, peak, seconds = run_child(
                [sys.executable, *CLI, "convert", "--client", "both", "--activities", "move"],
                env=env,
                log=tmp / "convert.log",
            )
        finally:
            stop(sandbox)
        jobs = Journal.open(db_url, portal=WebhookAuth(info["webhook_url"]).key).jobs()
    job = jobs[0] if jobs else None
    return Peak(
        leads=leads,
        peak_mb=peak,
        seconds=seconds,
        exit_code=code,
        status=job.status if job else "no job",
        converted=job.converted if job else 0,
        failed=job.failed if job else 0,
        requests=job.requests if job else 0,
    )


def command(leads: int) -> str:
    """The command that reproduces a run."""
    return "python -m bench.memory" + ("" if leads == LEADS else f" --leads {leads}")


def rows(*, quick: bool = False, leads: int | None = None, seed: int = 1) -> list[dict[str, str]]:
    """The bench's row: peak memory against the goal (`quick`: 1,000 leads)."""
    leads = leads if leads is not None else (QUICK_LEADS if quick else LEADS)
    peak = measure(leads, seed=seed)
    verdict = (
        f"ok: {peak.converted} converted in {peak.seconds:.0f} s, {peak.requests} requests"
        if peak.ok
        else f"BROKEN: exit {peak.exit_code}, job {peak.status}, {peak.failed} failed"
    )
    if peak.ok and peak.peak_mb >= GOAL_MB:
        verdict = f"OVER GOAL: {verdict}"
    return [
        figure(
            what=f"peak memory converting {leads:,} leads (b24app convert, {PLAN} plan)",
            measured=f"{peak.peak_mb:.0f} MB",
            versus=f"goal < {GOAL_MB:.0f} MB",
            ratio=ratio(peak.peak_mb, GOAL_MB),
            result=verdict,
            reproduce=command(leads),
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the row; exit 1 when the run is broken or over the goal."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=LEADS, help=f"seeded leads ({LEADS})")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.leads <= 0:
        parser.error("--leads must be positive")
    found = rows(leads=args.leads, seed=args.seed)
    print_table(found, title="Peak memory of a conversion")
    return 0 if found[0]["result"].startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
