"""Background upkeep: heartbeats (and each daemon's share of a number's rate), recovery of
contacts whose attempt outcome became unknown (expired lease, dead daemon), and pruning of the
webhook's replay digests past their window."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable

import asyncpg

from daemon.config import Config
from daemon.core.ratelimit import RateLimiters
from daemon.db import receipts_store
from daemon.db import sender_store as store
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.logs import get_logger

log = get_logger(__name__)

HEARTBEAT_EVERY_S = 1.0
# A daemon silent this long is dead: its in-flight contacts are recovered without waiting
# for their leases, and it no longer takes a share of the rate.
DEAD_AFTER_S = 5.0
DIGEST_PRUNE_EVERY_S = 300.0
# Sending stops when this daemon has not heartbeated for this long: past DEAD_AFTER_S other
# daemons may recover its claims, so it must renew them before sending again.
FENCE_AFTER_S = DEAD_AFTER_S * 0.6


def new_daemon_id() -> str:
    """A daemon id unique across hosts and restarts: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def send_bound_s(request_timeout_s: float) -> float:
    """How long after its last heartbeat a daemon may still have a message leave: it starts
    no send once its heartbeat is older than FENCE_AFTER_S (measured from when the heartbeat
    was sent, before the database wrote it), and a send lasts at most the request timeout;
    a second of margin for clocks and scheduling."""
    return FENCE_AFTER_S + request_timeout_s + 1.0


def beat_numbers(limiters: RateLimiters) -> dict[str, dict[str, float]]:
    """Each sending number's rate (this daemon's share) and effective rate, for the heartbeat."""
    return {
        number: {
            "rate": round(bucket.configured_rate, 3),
            "effective": round(bucket.effective_rate, 3),
        }
        for number, bucket in limiters.buckets().items()
    }


async def heartbeat_loop(
    pool: asyncpg.Pool,
    daemon_id: str,
    limiters: RateLimiters,
    on_beat: Callable[[float], None],
    beat: Callable[[], store.Beat],
) -> None:
    """Heartbeat every second (what `beat` says: stops confirmed, numbers, rates); then call
    `on_beat` with the monotonic time the heartbeat was sent. Every daemon takes an equal
    share of each number's rate: n live daemons, 1/n each."""
    host, pid = socket.gethostname(), os.getpid()
    loop = asyncio.get_running_loop()
    while True:
        started = time.monotonic()
        try:
            async with pool.acquire() as conn:
                await store.heartbeat(conn, daemon_id, host, pid, beat())
                live = max(1, await store.live_daemon_count(conn, DEAD_AFTER_S))
            if abs(limiters.share - 1 / live) > 1e-9:
                log.info("rate_share_changed", daemons=live, share=round(1 / live, 4))
                limiters.set_share(loop.time(), 1 / live)
            on_beat(started)
        except RETRYABLE_ERRORS as exc:
            log.warning("heartbeat_failed", error=repr(exc))
            await asyncio.sleep(HEARTBEAT_EVERY_S / 4)
            continue
        await asyncio.sleep(HEARTBEAT_EVERY_S)


async def recovery_loop(
    pool: asyncpg.Pool, config: Config, daemon_id: str, on_recovered: Callable[[], None]
) -> None:
    """Give contacts whose lease expired (or whose daemon died) the unknown-outcome policy;
    `on_recovered` wakes the sender. Runs until cancelled."""
    every_s = max(0.5, min(5.0, config.recovery.lease_s / 4))
    recovery = config.recovery
    while True:
        try:
            async with pool.acquire() as conn:
                rows = await store.expire_leases(
                    conn,
                    recovery.unknown_outcome,
                    recovery.grace_s,
                    config.sender.max_attempts,
                    DEAD_AFTER_S,
                    daemon_id,
                    recovery.max_unknown_outcomes,
                )
            if rows:
                log.warning(
                    "leases_expired",
                    count=len(rows),
                    policy=recovery.unknown_outcome,
                    to_error=sum(1 for r in rows if r["state"] == "error"),
                )
                on_recovered()
                continue
        except RETRYABLE_ERRORS as exc:
            log.warning("lease_recovery_failed", error=repr(exc))
        await asyncio.sleep(every_s)


async def digest_prune_loop(
    pool: asyncpg.Pool, replay_window_s: float, every_s: float = DIGEST_PRUNE_EVERY_S
) -> None:
    """Delete webhook digests older than the replay window, every `every_s`. Runs until
    cancelled."""
    while True:
        try:
            async with pool.acquire() as conn:
                deleted = await receipts_store.prune_webhook_digests(conn, replay_window_s)
            if deleted:
                log.info("webhook_digests_pruned", count=deleted)
        except (*RETRYABLE_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("webhook_digests_prune_failed", error=repr(exc))
        await asyncio.sleep(every_s)
