"""The number-health gauges in /metrics: Meta's phone_number_quality_update events (stored by
the webhook) as the factor each number's rate carries now, its last event and its throughput
upgrade; read from the real database by the metrics loop."""

from __future__ import annotations

import asyncio

import asyncpg

from daemon.db import listening_store
from daemon.db.pool import open_pool
from daemon.engine.metrics import Metrics, metrics_loop
from tests.test_metrics import FakeRecorder, FakeSender, _until, samples, value

FLAGGED_NUMBER, UPGRADED_NUMBER = "2000001", "2000002"


async def _numbers(conn: asyncpg.Connection) -> None:
    await listening_store.numbers_seen(
        conn, {"15550000001": FLAGGED_NUMBER, "15550000002": UPGRADED_NUMBER}
    )
    await conn.execute(
        "INSERT INTO campaigns (name, template_name, template_language, phone_number_id, state,"
        " template_category) VALUES ('offer', 't', 'en', $1, 'running', 'MARKETING')",
        FLAGGED_NUMBER,
    )


async def test_the_gauges_follow_the_numbers_quality_events(conn: asyncpg.Connection) -> None:
    await _numbers(conn)
    await listening_store.number_event(conn, "15550000001", "FLAGGED", 0.5, None, None, None)
    await listening_store.number_event(
        conn, "15550000002", "THROUGHPUT_UPGRADE", None, True, None, None
    )
    metrics = Metrics()
    await metrics.refresh_number_health(conn)
    assert value(metrics, "wa_sender_number_rate_factor", phone_number_id=FLAGGED_NUMBER) == 0.5
    assert value(metrics, "wa_sender_number_rate_factor", phone_number_id=UPGRADED_NUMBER) == 1.0
    assert (
        value(metrics, "wa_sender_number_quality", phone_number_id=FLAGGED_NUMBER, event="FLAGGED")
        == 1
    )
    upgraded = "wa_sender_number_throughput_upgraded"
    assert value(metrics, upgraded, phone_number_id=UPGRADED_NUMBER) == 1
    assert value(metrics, upgraded, phone_number_id=FLAGGED_NUMBER) == 0

    # UNFLAGGED restores it; the FLAGGED series goes, one event per number stays
    await listening_store.number_event(conn, "15550000001", "UNFLAGGED", 1.0, None, None, None)
    await metrics.refresh_number_health(conn)
    assert value(metrics, "wa_sender_number_rate_factor", phone_number_id=FLAGGED_NUMBER) == 1.0
    events = {
        dict(labels)["event"]
        for name, labels in samples(metrics)
        if name == "wa_sender_number_quality" and ("phone_number_id", FLAGGED_NUMBER) in labels
    }
    assert events == {"UNFLAGGED"}


async def test_a_flag_without_marketing_campaigns_leaves_the_rate_whole(
    conn: asyncpg.Connection,
) -> None:
    await _numbers(conn)
    await conn.execute("UPDATE campaigns SET template_category = 'UTILITY'")
    await listening_store.number_event(conn, "15550000001", "DOWNGRADE", 0.5, None, None, None)
    metrics = Metrics()
    await metrics.refresh_number_health(conn)
    assert value(metrics, "wa_sender_number_rate_factor", phone_number_id=FLAGGED_NUMBER) == 1.0
    assert (
        value(
            metrics, "wa_sender_number_quality", phone_number_id=FLAGGED_NUMBER, event="DOWNGRADE"
        )
        == 1
    )


async def test_the_metrics_loop_reads_number_health(conn: asyncpg.Connection, db_dsn: str) -> None:
    await _numbers(conn)
    await listening_store.number_event(conn, "15550000001", "FLAGGED", 0.5, None, None, None)
    metrics = Metrics()
    async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
        task = asyncio.create_task(
            metrics_loop(
                metrics, FakeSender(), FakeRecorder(), pool, every_s=0.01, database_every_s=0.01
            )
        )
        try:
            await _until(
                lambda: (
                    value(metrics, "wa_sender_number_rate_factor", phone_number_id=FLAGGED_NUMBER)
                    == 0.5
                )
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
