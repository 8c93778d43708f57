"""Run the real daemon in-process (run_daemon with a stop event) for end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from daemon.config import Config, Secret, with_overrides
from daemon.core.states import PENDING_STATES
from daemon.engine.service import run_daemon


def daemon_config(base_url: str, **sections: dict[str, Any]) -> Config:
    config = with_overrides(
        Config(),
        whatsapp={
            "base_url": base_url,
            "access_token": Secret("test-token"),
            "request_timeout_s": 2.0,
        },
        sender={
            "rate_per_second": 5000.0,
            "burst": 100.0,
            "concurrency": 64,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.2,
            "idle_poll_s": 0.5,
        },
        recovery={"lease_s": 10.0, "grace_s": 0.5},
        webhook={"enabled": False},
        metrics={"enabled": False},
    )
    return with_overrides(config, **sections) if sections else config


@asynccontextmanager
async def running_daemon(config: Config, dsn: str, **kwargs: Any) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_daemon(config, dsn, stop=stop, install_signal_handlers=False, **kwargs)
    )
    try:
        yield stop
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def wait_until_final(
    conn: asyncpg.Connection, campaign_id: int, timeout_s: float = 60
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    pending = [s.value for s in PENDING_STATES]
    while True:
        left = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state::text = ANY($2)",
            campaign_id,
            pending,
        )
        if left == 0:
            return await state_counts(conn, campaign_id)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{left} contacts still pending: {await state_counts(conn, campaign_id)}"
            )
        await asyncio.sleep(0.05)


async def state_counts(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT state::text AS s, count(*) AS n FROM contacts WHERE campaign_id = $1 GROUP BY 1",
        campaign_id,
    )
    return {r["s"]: r["n"] for r in rows}


async def wait_campaign_state(
    conn: asyncpg.Connection, campaign_id: int, state: str, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while (
        now := await conn.fetchval("SELECT state::text FROM campaigns WHERE id = $1", campaign_id)
    ) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"campaign {campaign_id} is {now}, expected {state}")
        await asyncio.sleep(0.05)
