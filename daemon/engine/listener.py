"""LISTEN on the campaigns channel with its own connection, so the sender wakes on NOTIFY
(campaign started or resumed) instead of polling; reconnects after the database comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from daemon.core.retry import database_retrying
from daemon.db.campaigns import CAMPAIGNS_CHANNEL
from daemon.db.pool import CONNECTION_ERRORS
from daemon.logs import get_logger

log = get_logger(__name__)


async def listen_for_campaign_changes(dsn: str, on_change: Callable[[], None]) -> None:
    """Runs until cancelled."""
    while True:
        lost = asyncio.Event()
        conn: asyncpg.Connection | None = None
        async for attempt in database_retrying(
            CONNECTION_ERRORS, log, operation="listen", max_s=5.0
        ):
            with attempt:
                conn = await asyncpg.connect(dsn)
        assert conn is not None
        try:
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(CAMPAIGNS_CHANNEL, lambda *_args: on_change())
            on_change()  # anything that changed while we were not listening
            await lost.wait()
            log.warning("listen_connection_lost")
        finally:
            if not conn.is_closed():
                await conn.close()
