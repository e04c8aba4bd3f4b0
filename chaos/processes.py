"""The app's processes in a chaos run: the web app under gunicorn and `b24app worker`s.

Each runs as a child process with the run's environment and logs to its own file; workers can be
killed with SIGKILL and replaced, as a supervisor (systemd, Kubernetes) would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

CLI = ("-c", "from b24app.cli import main; main()")


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WebApp:
    """`gunicorn 'handlers:create_app()'` on a loopback port."""

    def __init__(self, env: dict[str, str], logs: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = env
        self._log = logs / "web.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> WebApp:
        """Start gunicorn and wait until /healthz answers."""
        with self._log.open("a", encoding="utf-8") as out:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and args
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "2",
                    "--worker-class",
                    "gthread",
                    "--threads",
                    "4",
                    "handlers:create_app()",
                ],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the web app exited:\n{_tail(self._log)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"the web app did not answer within 60 s:\n{_tail(self._log)}")

    def stop(self) -> None:
        """Stop gunicorn."""
        if self._process is not None:
            _stop(self._process)


@dataclass
class Workers:
    """`b24app worker` processes; `kill` one with SIGKILL, `replace` it with a fresh one."""

    env: dict[str, str]
    logs: Path
    threads: int = 2
    tick: float = 1.0
    running: dict[int, subprocess.Popen] = field(default_factory=dict)
    started: int = 0

    def spawn(self) -> int:
        """Start one more worker; its pid."""
        self.started += 1
        log = self.logs / f"worker-{self.started}.log"
        with log.open("a", encoding="utf-8") as out:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and args
                [
                    sys.executable,
                    *CLI,
                    "worker",
                    "--workers",
                    str(self.threads),
                    "--tick",
                    f"{self.tick:g}",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.running[process.pid] = process
        return process.pid

    def kill(self, pid: int) -> None:
        """SIGKILL one worker and reap it."""
        process = self.running.pop(pid)
        os.kill(pid, signal.SIGKILL)
        process.wait()

    def dump_stacks(self) -> None:
        """Have every worker write its threads' stacks to its log (SIGUSR1, `b24app worker`)."""
        for pid in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def died(self) -> list[tuple[int, int | None]]:
        """Workers that exited on their own: (pid, exit code); they are forgotten."""
        gone = [(pid, p.returncode) for pid, p in self.running.items() if p.poll() is not None]
        for pid, _ in gone:
            self.running.pop(pid)
        return gone

    def stop_all(self) -> None:
        """Stop every worker (SIGINT: Huey's graceful stop, then SIGKILL if it lingers)."""
        for process in self.running.values():
            _stop(process, signal.SIGINT, timeout=15)
        self.running.clear()

    def log_tail(self) -> str:
        """The end of the latest worker logs (for a failed run)."""
        files = sorted(self.logs.glob("worker-*.log"))[-2:]
        return "\n".join(f"--- {f.name}\n{_tail(f)}" for f in files)
