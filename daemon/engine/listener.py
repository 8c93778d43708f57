"""LISTEN on a channel with a connection of its own, so loops wake on NOTIFY instead of
polling (campaign started or resumed; receipts stored); reconnects after the database comes
back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from daemon.core.retry import database_retrying
from daemon.db.campaigns import CAMPAIGNS_CHANNEL
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.logs import get_logger

log = get_logger(__name__)


async def listen(dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
    """Call `on_notify` for every notification on `channel`, and once after each (re)connect
    for what happened while nobody listened. Runs until cancelled."""
    while True:
        lost = asyncio.Event()
        conn: asyncpg.Connection | None = None
        async for attempt in database_retrying(
            RETRYABLE_ERRORS, log, operation=f"listen_{channel}", max_s=5.0
        ):
            with attempt:
                conn = await asyncpg.connect(dsn)
        assert conn is not None
        try:
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(channel, lambda *_args: on_notify())
            on_notify()
            await lost.wait()
            log.warning("listen_connection_lost", channel=channel)
        finally:
            if not conn.is_closed():
                await conn.close()


async def listen_for_campaign_changes(dsn: str, on_change: Callable[[], None]) -> None:
    """Call `on_change` on every NOTIFY of a campaign started or resumed. Runs until cancelled."""
    await listen(dsn, CAMPAIGNS_CHANNEL, on_change)
