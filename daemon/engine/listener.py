"""LISTEN on a channel with a connection of its own, so loops wake on NOTIFY instead of
polling (campaign started or resumed; receipts stored); reconnects after the database comes
back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import asyncpg

from daemon.core.retry import database_retrying
from daemon.db.campaigns import CAMPAIGNS_CHANNEL
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.logs import get_logger

log = get_logger(__name__)

SUBSCRIBE_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE_ERRORS, OSError)


async def listen(dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
    """Call `on_notify` for every notification on `channel`, and once after each (re)connect
    for what happened while nobody listened. Runs until cancelled."""
    await listen_channels(dsn, {channel: lambda _payload: on_notify()})


async def listen_channels(dsn: str, handlers: Mapping[str, Callable[[str | None], None]]) -> None:
    """One connection LISTENing on every channel of `handlers`: each gets the payload of
    every notification on its channel, and None once after each (re)connect for what
    happened while nobody listened. Runs until cancelled."""
    names = ",".join(handlers)
    while True:
        lost = asyncio.Event()
        conn: asyncpg.Connection | None = None
        async for attempt in database_retrying(
            RETRYABLE_ERRORS, log, operation=f"listen_{names}", max_s=5.0
        ):
            with attempt:
                conn = await asyncpg.connect(dsn)
        assert conn is not None
        try:
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                for channel, handler in handlers.items():
                    await conn.add_listener(channel, lambda *args, h=handler: h(args[3]))
            except SUBSCRIBE_ERRORS as exc:  # cut while subscribing: again
                log.warning("listen_failed", channel=names, error=repr(exc))
                await asyncio.sleep(0.1)
                continue
            for handler in handlers.values():
                handler(None)
            await lost.wait()
            log.warning("listen_connection_lost", channel=names)
        finally:
            if not conn.is_closed():
                await conn.close()


async def listen_for_campaign_changes(
    dsn: str,
    on_change: Callable[[], None],
    others: Mapping[str, Callable[[str | None], None]] | None = None,
) -> None:
    """Call `on_change` on every NOTIFY of a campaign started or resumed, and `others`'
    handlers on their channels, on the same connection. Runs until cancelled."""
    await listen_channels(dsn, {CAMPAIGNS_CHANNEL: lambda _payload: on_change(), **(others or {})})
