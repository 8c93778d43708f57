"""Inbound messages applied in batches, right after the webhook stored them.

The webhook request only INSERTs a POST's inbound messages (`listening.apply_listening`) and
wakes this applier; the applier takes every stored message not applied yet (any webhook
process's, SKIP LOCKED) in one statement per `BATCH`: matching to the campaign message each
answers, opt-outs on the suppression list with the phone's pending contacts stopped and the
daemons told (NOTIFY, `engine.optout_watch`), user ids on the phone's contacts. Like statuses
(stored by the request, applied by the reconciler), so that a reply costs the request one
plain INSERT and never waits for a contact's row lock. Without a wake (a message stored by
another process, or left by a crash) it looks again every `LOOK_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
from aiohttp import web

from daemon.db import listening_store as store
from daemon.db.pool import CONNECTION_ERRORS
from daemon.engine.listening import ListeningStats
from daemon.logs import get_logger

log = get_logger(__name__)


BATCH = 2000
LOOK_EVERY_S = 1.0
FAILURE_PAUSE_S = 0.5


class InboundApplier:
    """`run` applies stored inbound messages whenever `wake` is called, and every
    LOOK_EVERY_S; counts go to the webhook's ListeningStats."""

    def __init__(self, pool: asyncpg.Pool, stats: ListeningStats) -> None:
        self._pool = pool
        self._stats = stats
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Messages were stored: apply them now."""
        self._wake.set()

    async def apply_all(self) -> int:
        """Apply batches until none is left; how many messages."""
        applied = 0
        while True:
            async with self._pool.acquire() as conn:
                result = await store.apply_inbound(conn, BATCH)
            applied += result.applied
            self._stats.opt_outs += result.opt_outs
            self._stats.contacts_stopped += result.contacts_stopped
            if result.opt_outs:
                log.info(
                    "opt_outs_applied",
                    opt_outs=result.opt_outs,
                    suppressed=result.suppressed,
                    contacts_stopped=result.contacts_stopped,
                )
            if result.applied < BATCH:
                return applied

    async def run(self) -> None:
        """Apply on every wake and every LOOK_EVERY_S. Runs until cancelled."""
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(self._wake.wait(), LOOK_EVERY_S)
            self._wake.clear()
            try:
                if not woken:
                    async with self._pool.acquire() as conn:
                        if not await store.inbound_pending(conn):
                            continue
                await self.apply_all()
            except (*CONNECTION_ERRORS, asyncpg.PostgresError, OSError) as exc:
                log.warning("inbound_apply_failed", error=repr(exc))
                await asyncio.sleep(FAILURE_PAUSE_S)
            except Exception as exc:  # a bug: keep applying (the rows stay pending)
                log.error("inbound_applier_failed", error=repr(exc))
                await asyncio.sleep(FAILURE_PAUSE_S)


INBOUND_KEY: Final = web.AppKey("wa_sender_inbound_applier", InboundApplier)


async def running_applier(app: web.Application) -> AsyncIterator[None]:
    """An aiohttp cleanup context: the app's InboundApplier runs while the app serves."""
    task = asyncio.create_task(app[INBOUND_KEY].run(), name="inbound-applier")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
