"""Number health in the sender: what Meta's `phone_number_quality_update` events (stored by
the webhook, any daemon's) do to this daemon's token buckets. FLAGGED / DOWNGRADE scale the
number by `[sender] flagged_rate_factor` while it sends a MARKETING campaign; UNFLAGGED /
UPGRADE restore it; THROUGHPUT_UPGRADE lets it rise to `[sender] max_rate_per_second`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from daemon.config import Config
from daemon.core.ratelimit import RateLimiters
from daemon.db.pool import CONNECTION_ERRORS
from daemon.db.sql import query
from daemon.logs import get_logger

log = get_logger(__name__)

NUMBER_HEALTH_EVERY_S = 0.5


async def apply_number_health(
    conn: asyncpg.Connection, config: Config, limiters: RateLimiters, now: float
) -> dict[str, float]:
    """Read the numbers' health once and set the buckets; each number's factor now."""
    factors: dict[str, float] = {}
    for row in await conn.fetch(query("number_rates")):
        number = row["phone_number_id"]
        factor = _factor(row)
        rate = config.sender.max_rate_per_second if row["throughput_upgraded"] else None
        if limiters.set_number(now, number, factor, rate):
            log.warning(
                "number_rate_changed",
                phone_number_id=number,
                quality_event=row["quality_event"],
                factor=factor,
                rate_ceiling=rate,
            )
        factors[number] = factor
    return factors


@dataclass(frozen=True, slots=True)
class NumberHealth:
    """One sending number's health as Meta last reported it (the metrics' gauges)."""

    phone_number_id: str
    quality_event: str
    rate_factor: float  # applied to its rate now (1.0 unless it sends marketing while flagged)
    throughput_upgraded: bool


async def number_health(conn: asyncpg.Connection) -> list[NumberHealth]:
    """Every number Meta reported on, with the factor its buckets carry now."""
    return [
        NumberHealth(
            row["phone_number_id"],
            row["quality_event"] or "NONE",
            _factor(row),
            bool(row["throughput_upgraded"]),
        )
        for row in await conn.fetch(query("number_rates"))
    ]


def _factor(row: asyncpg.Record) -> float:
    factor: float = row["marketing_rate_factor"] if row["sends_marketing"] else 1.0
    return min(1.0, max(factor, 1e-6))


async def number_health_loop(pool: asyncpg.Pool, config: Config, limiters: RateLimiters) -> None:
    """Apply the numbers' health every NUMBER_HEALTH_EVERY_S. Runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with pool.acquire() as conn:
                await apply_number_health(conn, config, limiters, loop.time())
        except CONNECTION_ERRORS as exc:
            log.warning("number_health_failed", error=repr(exc))
        await asyncio.sleep(NUMBER_HEALTH_EVERY_S)
