"""A malformed or unreachable DATABASE_URL gets one clear line and a non-zero exit, never a
traceback, and the DSN (which may hold a password) is never printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("garbage", "is malformed"),
        (f"postgresql://u:{SECRET}@127.0.0.1:99999/x", "port is not in 0-65535"),
        (f"postgresql://u:{SECRET}@127.0.0.1:port/x", "port is not a number"),
        (f"postgresql://u:{SECRET}@[::1/x", "is malformed"),
        (f"postgresql://u:{SECRET}@127.0.0.1:1/x", "cannot connect to the database"),
    ],
)
def test_a_bad_database_url_is_one_line_and_a_nonzero_exit(url: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_SENDER_")}
    env["DATABASE_URL"] = url
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "campaign", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("wa-sender: error:") and expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
