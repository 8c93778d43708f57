"""The mock Cloud API as its own process (``wa-sender mock-api``), and what the harness reads
from it: ``GET /_mock/stats`` while running, ``GET /_mock/messages?format=ndjson`` at the end.

Why its own process: on a 2-core machine the mock, the system under test and PostgreSQL each
need CPU. In the harness's process the mock would share one event loop (and the GIL) with
progress polling, psutil sampling and result parsing, and its answers would slow down for
reasons that are not the sender's. Alone, it gets the scheduler's fair share like a remote API
that costs the sender nothing, and its own CPU is measured apart.
"""

from __future__ import annotations

import asyncio
import json
import select
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from daemon.errors import WaSenderError
from daemon.loadtest.processes import Child, clean_env, spawn, stop, try_reap

READY_PREFIX = "mock-api listening on "
TOKEN = "loadtest-token"
APP_SECRET = "loadtest-app-secret"


@dataclass(frozen=True)
class MockSettings:
    api_limit: float = 0.0  # per phone number; 0 = none
    api_burst: float | None = None
    latency_ms: float = 0.0
    error_rate: float = 0.0  # transient errors
    webhook_url: str | None = None  # receipts on when set
    seed: int | None = None
    fast_lane: bool = True
    reply_rate: float = 0.0  # inbound replies (opt-outs included), with receipts only
    optout_rate: float = 0.0


def mock_argv(settings: MockSettings) -> list[str]:
    argv = [sys.executable, "-m", "daemon", "mock-api", "--host", "127.0.0.1", "--port", "0"]
    if settings.api_limit > 0:
        argv += ["--limit", f"{settings.api_limit:g}"]
        if settings.api_burst:
            argv += ["--burst", f"{settings.api_burst:g}"]
    if settings.latency_ms > 0:
        argv += ["--latency-ms", f"{settings.latency_ms:g}"]
    if settings.error_rate > 0:
        argv += ["--error-rate", f"{settings.error_rate:g}"]
    if settings.webhook_url:
        argv += ["--receipts", "--webhook-url", settings.webhook_url]
        if settings.reply_rate > 0:
            argv += ["--reply-rate", f"{settings.reply_rate:g}"]
            argv += ["--optout-rate", f"{settings.optout_rate:g}"]
    if settings.seed is not None:
        argv += ["--seed", str(settings.seed)]
    if not settings.fast_lane:
        argv.append("--no-fast-lane")
    return argv


@dataclass
class MockProcess:
    child: Child
    base_url: str


async def start_mock(settings: MockSettings, log_path: Path, timeout_s: float = 30) -> MockProcess:
    env = clean_env(
        {
            "WA_SENDER_WHATSAPP_ACCESS_TOKEN": TOKEN,
            "WA_SENDER_WHATSAPP_APP_SECRET": APP_SECRET,
            "WA_SENDER_LOGGING_FORMAT": "json",
            "WA_SENDER_LOGGING_LEVEL": "warning",
        }
    )
    child = spawn("mock", mock_argv(settings), env=env, log_path=log_path, stdout_pipe=True)
    try:
        url = await asyncio.to_thread(_read_ready_line, child, timeout_s)
    except BaseException:
        await stop(child, 5)
        raise
    return MockProcess(child, url)


def _read_ready_line(child: Child, timeout_s: float) -> str:
    stream = child.popen.stdout
    assert stream is not None
    deadline = time.monotonic() + timeout_s
    buffered = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            chunk = stream.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                break
            buffered += chunk
            for line in buffered.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    url: str = line[len(READY_PREFIX) :].strip()
                    return url
        elif try_reap(child) is not None:
            break
    raise WaSenderError(f"the mock API did not start within {timeout_s:g} s (see {child.log_path})")


async def fetch_stats(session: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with session.get(f"{base_url}/_mock/stats") as response:
        response.raise_for_status()
        stats: dict[str, Any] = await response.json()
        return stats


@dataclass
class AcceptedLog:
    """The mock's accepted messages, column-wise (only what the analysis needs)."""

    callback: list[str | None] = field(default_factory=list)
    wamid: list[str] = field(default_factory=list)
    phone_number_id: list[str] = field(default_factory=list)
    accepted_at: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.wamid)


async def fetch_accepted(session: aiohttp.ClientSession, base_url: str) -> AcceptedLog:
    log = AcceptedLog()
    numbers: dict[str, str] = {}
    timeout = aiohttp.ClientTimeout(total=600)
    url = f"{base_url}/_mock/messages?format=ndjson"
    async with session.get(url, timeout=timeout) as response:
        response.raise_for_status()
        pending = b""
        async for chunk in response.content.iter_chunked(1 << 16):
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line:
                    _append(log, json.loads(line), numbers)
        if pending.strip():
            _append(log, json.loads(pending), numbers)
    return log


def _append(log: AcceptedLog, message: dict[str, Any], numbers: dict[str, str]) -> None:
    number = message["phone_number_id"]
    log.callback.append(message.get("biz_opaque_callback_data"))
    log.wamid.append(message["wamid"])
    log.phone_number_id.append(numbers.setdefault(number, number))
    log.accepted_at.append(float(message["accepted_at"]))
