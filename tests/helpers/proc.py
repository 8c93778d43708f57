"""The daemon as a real process (`python -m daemon run`), configured through the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def daemon_env(dsn: str, base_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_SENDER_")}
    env.update(
        {
            "DATABASE_URL": dsn,
            "WA_SENDER_WHATSAPP_BASE_URL": base_url,
            "WA_SENDER_WHATSAPP_ACCESS_TOKEN": "test-token",
            "WA_SENDER_WHATSAPP_REQUEST_TIMEOUT_S": "2",
            "WA_SENDER_WEBHOOK_ENABLED": "false",
            "WA_SENDER_METRICS_ENABLED": "false",
            "WA_SENDER_SENDER_RATE_PER_SECOND": "1000",
            # Against the mock, above the Cloud API's 1,000 msg/s per number.
            "WA_SENDER_SENDER_MAX_RATE_PER_SECOND": "1000000",
            "WA_SENDER_SENDER_BURST": "50",
            "WA_SENDER_SENDER_RETRY_INITIAL_S": "0.05",
            "WA_SENDER_SENDER_RETRY_MAX_S": "0.2",
            "WA_SENDER_SENDER_IDLE_POLL_S": "0.5",
            "WA_SENDER_RECOVERY_LEASE_S": "10",
            "WA_SENDER_RECOVERY_GRACE_S": "1",
            "WA_SENDER_LOGGING_FORMAT": "json",
        }
    )
    env.update({f"WA_SENDER_{k.upper()}": v for k, v in overrides.items()})
    return env


async def start_daemon(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    log = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "run",
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
    finally:
        log.close()


async def stop_daemon(process: asyncio.subprocess.Process, timeout_s: float = 30) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
