"""`b24app worker` from the shell: bad settings and flags are one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

B24APP = str(Path(sys.executable).with_name("b24app"))


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("B24")}
    return subprocess.run(
        [B24APP, "worker", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _run([], {}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[:1] == [
        "b24app: error: missing setting(s): B24_CLIENT_ID, B24_CLIENT_SECRET, B24APP_SECRET_KEY"
    ]
    assert "Traceback" not in done.stderr


def test_a_bad_queue_url_and_bad_flags_are_one_line_and_exit_2(tmp_path: Path) -> None:
    from b24app.store.crypto import Cipher

    env = {
        "B24_CLIENT_ID": "a",
        "B24_CLIENT_SECRET": "b",
        "B24APP_SECRET_KEY": Cipher.generate_key(),
        "B24APP_QUEUE_URL": "amqp://nowhere/",
    }
    bad_queue = _run([], env, tmp_path)
    assert bad_queue.returncode == 2
    assert bad_queue.stderr.strip().splitlines()[:1] == [
        "b24app: error: B24APP_QUEUE_URL must be redis://host:6379/1 or sqlite:///path/queue.db"
    ]
    bad_flag = _run(["--workers", "0"], env, tmp_path)
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.startswith("b24app: error: ")  # then a hint line
    assert len(bad_flag.stderr.strip().splitlines()) <= 2
