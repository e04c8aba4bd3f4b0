"""`b24app serve`: the entry point serves the app; bad settings are one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from b24app.store.crypto import Cipher
from tests.scenarios.market_app import free_port

B24APP = [sys.executable, "-c", "from b24app.cli import main; main()"]


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24APP_", "B24_"))}
    return env | {"B24APP_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"} | extra


def test_serve_answers_healthz_on_the_chosen_port(tmp_path) -> None:
    port = free_port()
    env = _env(tmp_path, B24APP_SECRET_KEY=Cipher.generate_key())
    proc = subprocess.Popen(
        [*B24APP, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "b24app serve did not start"
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["database"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_a_secret_key_is_one_line_and_exit_2(tmp_path) -> None:
    done = subprocess.run(
        [*B24APP, "serve", "--port", str(free_port())],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[:1] == [
        "b24app: error: missing setting(s): B24APP_SECRET_KEY"
    ]
