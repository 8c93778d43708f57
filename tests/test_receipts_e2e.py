"""Receipts end to end: the real daemon with its webhook on loopback, the mock Cloud API
posting signed status webhooks back (duplicated, reordered, failed, read without delivered),
real PostgreSQL. Every contact must end where its last meaningful status puts it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from daemon.config import Config, Secret, with_overrides
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.db.receipts_store import pending_receipt_count
from daemon.engine.service import default_components, run_webhook
from daemon.mockapi.config import MockConfig, ReceiptConfig
from daemon.mockapi.receipts import PlannedStatus
from daemon.mockapi.server import start_mock_server
from daemon.mockapi.state import AcceptedMessage
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.data import campaign_with_contacts

SECRET = "e2e-app-secret"
RANK = {"sent": 1, "delivered": 2, "read": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def receipts_config(webhook_url: str) -> ReceiptConfig:
    return ReceiptConfig(
        enabled=True,
        webhook_url=webhook_url,
        app_secret=SECRET,
        delivered_rate=0.85,
        read_rate=0.5,
        read_without_delivered_rate=0.5,
        failed_rate=0.05,
        # final failures only: a failed 131026 of a first attempt is sent again (migration 12)
        failed_codes=(131050, 130472),
        duplicate_rate=0.10,
        reorder_rate=0.20,
        split_rate=0.2,
    )


def expected_outcome(kinds: set[str]) -> str:
    """What the statuses of one message put its contact in (from sent, once all arrived)."""
    if "failed" in kinds:  # the mock fails a message with a lone failed status
        return "delivery_failed"
    return max(kinds, key=RANK.__getitem__)


async def wait_receipts_settled(conn: asyncpg.Connection, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while await pending_receipt_count(conn):
        assert time.monotonic() < deadline, "receipts still pending"
        await asyncio.sleep(0.05)


async def run_campaign_with_receipts(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path, contacts: int
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, contacts)
    port = free_port()
    webhook_url = f"http://127.0.0.1:{port}/webhook"
    planned: list[PlannedStatus] = []
    started = time.monotonic()
    async with start_mock_server(
        MockConfig(seed=11, receipts=receipts_config(webhook_url))
    ) as mock:
        plan = mock.receipts.plan

        def recording_plan(message: AcceptedMessage, now: float) -> list[PlannedStatus]:
            statuses = plan(message, now)
            planned.extend(statuses)
            return statuses

        mock.receipts.plan = recording_plan  # type: ignore[method-assign]
        config = daemon_config(
            mock.base_url,
            whatsapp={"app_secret": Secret(SECRET)},
            webhook={"enabled": True, "host": "127.0.0.1", "port": port},
        )
        async with running_daemon(config, db_dsn, components=default_components(config)):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            await wait_until_final(conn, cid)
            async with asyncio.timeout(60):
                await mock.receipts.drain()
            await wait_receipts_settled(conn)
        counters = mock.receipts.stats()
    elapsed = time.monotonic() - started

    # Zero statuses lost: every generated status was acknowledged and is in the table.
    assert counters["dropped"] == 0 and counters["pending"] == 0
    assert counters["acknowledged"] == counters["generated"] == len(planned)
    assert counters["duplicates"] > 0 and counters["reordered"] > 0
    by_state = dict(
        await conn.fetch(
            "SELECT processing_state, count(*) FROM status_receipts GROUP BY processing_state"
        )
    )
    # A duplicate posted in a body identical to an earlier one (as Meta's retries are) is a
    # replay: acknowledged, not stored again. Every other status is stored, none is lost.
    stored = await conn.fetch("SELECT DISTINCT wamid, status FROM status_receipts")
    assert {(r["wamid"], r["status"]) for r in stored} == {(p.wamid, p.status) for p in planned}
    replayed = len(planned) - sum(by_state.values())
    assert 0 <= replayed <= counters["duplicates"]
    assert set(by_state) <= {"applied", "duplicate"}, by_state  # no pending, no orphan
    assert await conn.fetchval("SELECT count(*) FROM status_receipts WHERE contact_id IS NULL") == 0

    kinds: dict[str, set[str]] = defaultdict(set)
    stamps: dict[tuple[str, str], datetime] = {}
    codes: dict[str, int] = {}
    for status in planned:
        kinds[status.wamid].add(status.status)
        stamps[(status.wamid, status.status)] = datetime.fromtimestamp(status.timestamp, UTC)
        if status.error_code is not None:
            codes[status.wamid] = status.error_code
    rows = await conn.fetch("SELECT * FROM contacts WHERE campaign_id = $1", cid)
    assert len(rows) == contacts == len(kinds)
    outcomes: dict[str, int] = defaultdict(int)
    for row in rows:
        wamid = row["wamid"]
        want = expected_outcome(kinds[wamid])
        outcomes[want] += 1
        assert row["state"] == want, (wamid, sorted(kinds[wamid]))
        # Meta's timestamps are whole seconds: one dated before the send (recorded with
        # microseconds) is clamped to it, so timestamps never go backwards.
        sent_at = row["sent_at"]
        assert sent_at is not None
        if want == "read":
            assert sent_at <= row["delivered_at"] <= row["read_at"]
            assert row["read_at"] == max(stamps[(wamid, "read")], row["delivered_at"])
            # Set once: by delivered, or by a read that arrived first.
            by = [stamps.get((wamid, "delivered")), stamps[(wamid, "read")]]
            assert row["delivered_at"] in [max(t, sent_at) for t in by if t is not None]
        if want == "delivered":
            assert row["delivered_at"] == max(stamps[(wamid, "delivered")], sent_at)
        if want == "delivery_failed":
            assert row["error_code"] == codes[wamid]
            assert row["failed_at"] == max(stamps[(wamid, "failed")], sent_at)
    read_without_delivered = sum(1 for k in kinds.values() if "read" in k and "delivered" not in k)
    assert read_without_delivered > 0 and outcomes["delivery_failed"] > 0
    opted_out = sum(1 for code in codes.values() if code == 131050)
    assert await conn.fetchval("SELECT count(*) FROM suppressions") == opted_out > 0
    print(
        f"\n{contacts} contacts, {len(planned)} statuses ({counters['duplicates']} duplicates, "
        f"{counters['reordered']} reordered) in {elapsed:.1f} s: {dict(outcomes)}, "
        f"receipts {by_state}"
    )


async def test_every_contact_ends_where_its_receipts_put_it(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await run_campaign_with_receipts(db_dsn, conn, tmp_path, 2000)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_ten_thousand_contacts_end_where_their_receipts_put_them(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await run_campaign_with_receipts(db_dsn, conn, tmp_path, 10_000)


async def test_the_webhook_command_serves_and_reconciles_without_a_sender(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3)
    await conn.execute(
        "UPDATE contacts SET state = 'sent', wamid = 'wamid.cli' || id, sent_at = now()"
        " WHERE campaign_id = $1",
        cid,
    )
    wamids = [r["wamid"] for r in await conn.fetch("SELECT wamid FROM contacts ORDER BY id")]
    config: Config = with_overrides(
        Config(),
        whatsapp={"app_secret": Secret(SECRET)},
        webhook={"host": "127.0.0.1", "port": 0},
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    service = asyncio.create_task(
        run_webhook(
            config, db_dsn, stop=stop, install_signal_handlers=False, on_ready=ready.set_result
        )
    )
    try:
        url = await asyncio.wait_for(ready, 10)
        statuses = [
            {"id": w, "status": s, "timestamp": "1750030073", "recipient_id": "15550000000"}
            for w, s in zip(wamids, ("delivered", "read", "failed"), strict=True)
        ]
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {"id": "1", "changes": [{"field": "messages", "value": {"statuses": statuses}}]}
                ],
            }
        ).encode()
        async with aiohttp.ClientSession() as session:
            headers = {SIGNATURE_HEADER: sign(body, SECRET)}
            async with session.post(url + "/webhook", data=body, headers=headers) as resp:
                assert resp.status == 200
        await wait_receipts_settled(conn, timeout_s=10)
    finally:
        stop.set()
        assert await asyncio.wait_for(service, 10) == 0
    states = [r["state"] for r in await conn.fetch("SELECT state::text FROM contacts ORDER BY id")]
    assert states == ["delivered", "read", "delivery_failed"]


def test_the_daemon_runs_the_reconciler_always_and_the_web_server_when_enabled() -> None:
    from daemon.engine.reconciler import reconciler_component
    from daemon.errors import ConfigError

    enabled = with_overrides(
        Config(), whatsapp={"app_secret": Secret(SECRET)}, metrics={"enabled": False}
    )
    components = default_components(enabled)
    assert len(components) == 2 and components[0] is reconciler_component
    disabled = with_overrides(Config(), webhook={"enabled": False}, metrics={"enabled": False})
    assert default_components(disabled) == [reconciler_component]
    metrics_only = with_overrides(Config(), webhook={"enabled": False})
    assert len(default_components(metrics_only)) == 2  # reconciler, metrics (own server)
    with pytest.raises(ConfigError, match="app_secret"):
        default_components(Config())
