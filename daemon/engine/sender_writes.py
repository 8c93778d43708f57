"""The sender's own writes besides results (releases, cut-off sends' unknown outcomes), run
through outages and, at shutdown, under a deadline: what the database does not take by then
is kept in `Unwritten` for the spool (`engine.spool`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from daemon.config import Config
from daemon.core.retry import database_retrying
from daemon.db import sender_store as store
from daemon.db.pool import RETRYABLE_ERRORS, is_blocked_write
from daemon.engine.recorder import ResultRecorder
from daemon.logs import get_logger

log = get_logger(__name__)

_GIVE_UP_ON: tuple[type[BaseException], ...] = (TimeoutError, *RETRYABLE_ERRORS)


@dataclass
class Unwritten:
    """What the shutdown could not write: results, contacts to release, in-flight sends cut
    off (unknown outcome). Spooled to a file and replayed at the next start."""

    results: list[store.SendResult] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    cut_off: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many entries in all."""
        return len(self.results) + len(self.releases) + len(self.cut_off)


class SenderWrites:
    """Releases and unknown outcomes of one daemon's claims."""

    def __init__(
        self, pool: asyncpg.Pool, config: Config, daemon_id: str, recorder: ResultRecorder
    ) -> None:
        self._pool = pool
        self._config = config
        self._daemon_id = daemon_id
        self._recorder = recorder
        self.unwritten = Unwritten()

    async def release(self, ids: list[int], deadline: float | None = None) -> bool:
        """Give back contacts claimed and never sent; False: spooled instead."""
        written = await self.write(
            lambda conn: store.release_contacts(conn, ids, self._daemon_id), deadline
        )
        if not written:
            self.unwritten.releases.extend(ids)
        return written

    async def expire_unknown(self, ids: list[int], deadline: float | None = None) -> bool:
        """In-flight sends cut off at shutdown get the unknown-outcome policy; False: spooled."""
        recovery = self._config.recovery
        written = await self.write(
            lambda conn: store.expire_own_contacts(
                conn,
                ids,
                recovery.unknown_outcome,
                recovery.grace_s,
                self._config.sender.max_attempts,
                self._daemon_id,
                recovery.max_unknown_outcomes,
            ),
            deadline,
        )
        if not written:
            self.unwritten.cut_off.extend(ids)
        return written

    async def write(
        self,
        operation: Callable[[asyncpg.Connection], Awaitable[object]],
        deadline: float | None = None,
    ) -> bool:
        """Run one write through outages; with a `deadline` (monotonic, at shutdown) give up
        at it: False, the caller spools what it meant to write."""
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        try:
            async with asyncio.timeout(left):
                async for attempt in database_retrying(
                    RETRYABLE_ERRORS, log, operation="sender_write"
                ):
                    with attempt:
                        try:
                            async with self._pool.acquire() as conn:
                                await operation(conn)
                        except RETRYABLE_ERRORS as exc:
                            if is_blocked_write(exc):
                                self._recorder.note_blocked(exc)
                            raise
        except _GIVE_UP_ON as exc:
            if deadline is None:
                raise
            log.error("shutdown_write_failed", error=repr(exc))
            return False
        return True
