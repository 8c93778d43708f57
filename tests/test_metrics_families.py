"""The metrics an SRE expects, on their own port: the new families, their label rules, a scrape
during a run that sees the effective rate and the receipts lag move, and a second daemon on
the same port failing in one line."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import Config, Secret, with_overrides
from daemon.core.model import Campaign, CampaignId
from daemon.core.payload import Template
from daemon.core.states import CampaignCommand, CampaignState
from daemon.db.campaigns import ADMIN_PAUSE_REASON, change_campaign_state
from daemon.db.observe import DatabaseSample
from daemon.engine.collectors import automatic_pauses, pause_reason_class
from daemon.engine.metrics import Metrics
from daemon.engine.service import default_components
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.whatsapp.signature import SIGNATURE_HEADER
from tests.helpers.daemon import daemon_config, running_daemon
from tests.helpers.data import campaign_with_contacts
from tests.helpers.proc import REPO, daemon_env, start_daemon, stop_daemon
from tests.test_metrics import busy_metrics, samples

NUMBER = "1000001"
NEW_FAMILIES = {
    "wa_sender_effective_rate_per_second": "gauge",
    "wa_sender_configured_rate_per_second": "gauge",
    "wa_sender_daemon_heartbeat_age_seconds": "gauge",
    "wa_sender_daemons_live": "gauge",
    "wa_sender_receipts_lag_seconds": "gauge",
    "wa_sender_receipts_pending": "gauge",
    "wa_sender_receipts_orphaned": "gauge",
    "wa_sender_unknown_outcomes_awaiting": "gauge",
    "wa_sender_campaigns_paused_automatically": "gauge",
    "wa_sender_messaging_limit_used": "gauge",
    "wa_sender_messaging_limit": "gauge",
    "wa_sender_webhook_responses": "counter",
    "wa_sender_webhook_signature_failures": "counter",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_new_families_and_the_process_collectors_are_exported() -> None:
    metrics = busy_metrics()
    metrics.set_database(DatabaseSample(1.5, 7, 2, 3, 180, 2), daily_limit=200)
    families = {
        f.name: f.type for f in text_string_to_metric_families(metrics.exposition().decode())
    }
    assert families.items() >= NEW_FAMILIES.items()
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= set(families)
    values = {name: v for (name, labels), v in samples(metrics).items() if not labels}
    assert values["wa_sender_receipts_lag_seconds"] == 1.5
    assert values["wa_sender_receipts_pending"] == 7
    assert values["wa_sender_messaging_limit_used"] / values["wa_sender_messaging_limit"] == 0.9
    failures = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples(metrics).items()
        if name == "wa_sender_webhook_signature_failures_total"
    }
    assert failures == {"missing": 1, "invalid": 2}


def test_numbers_and_reasons_no_longer_seen_disappear() -> None:
    metrics = Metrics()
    metrics.set_rates({"1": (80.0, 40.0), "2": (80.0, 80.0)})
    metrics.set_automatic_pauses({"code_190": 1, "messaging_limit": 2})
    metrics.set_rates({"2": (80.0, 60.0)})
    metrics.set_automatic_pauses({"messaging_limit": 1})
    found = samples(metrics)
    rates = {
        dict(k[1])["phone_number_id"]: v
        for k, v in found.items()
        if k[0].startswith("wa_sender_eff")
    }
    pauses = {dict(k[1])["reason"]: v for k, v in found.items() if "paused_automatically" in k[0]}
    assert rates == {"2": 60.0} and pauses == {"messaging_limit": 1}


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("access token rejected (190): Error validating access token", "code_190"),
        ("business payment method problem (131042)", "code_131042"),
        ("HTTP 401 with unknown error code 987654: x", "code_987654"),
        ("HTTP 503 without a known error code", "http_503"),
        (
            "messaging limit reached: 250 unique recipients per rolling 24 h; next slot frees "
            "at 2026-12-24 09:00:00 UTC",
            "messaging_limit",
        ),
        ("template paused by Meta: quality RED", "template_paused_by_meta"),
        ("12345", "other"),
    ],
)
def test_pause_reasons_become_labels_of_bounded_cardinality(reason: str, label: str) -> None:
    assert pause_reason_class(reason) == label


def _campaign(state: CampaignState, pause: str | None = None, hold: str | None = None,
              hold_until: datetime | None = None) -> Campaign:  # fmt: skip
    now = datetime.now(UTC)
    return Campaign(CampaignId(1), "c", state, Template("t", "en", ()), NUMBER, pause, hold,
                    hold_until, now, now, None)  # fmt: skip


def test_automatic_pauses_are_the_daemons_not_the_operators() -> None:
    now = datetime.now(UTC)
    campaigns = [
        _campaign(CampaignState.PAUSED, pause=ADMIN_PAUSE_REASON),
        _campaign(CampaignState.PAUSED, pause="access token rejected (190)"),
        _campaign(CampaignState.PAUSED, pause="access token rejected (190): expired"),
        _campaign(CampaignState.RUNNING, hold="messaging limit reached: 250", hold_until=None),
        _campaign(
            CampaignState.RUNNING,
            hold="business account in maintenance mode (131057)",
            hold_until=now - timedelta(seconds=1),
        ),
        _campaign(CampaignState.RUNNING),
    ]
    assert automatic_pauses(campaigns, now) == {"code_190": 2, "messaging_limit": 1}


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def _value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def run_config(mock_url: str, metrics_port: int, webhook_port: int) -> Config:
    """The daemon as `wa-sender run` makes it: webhook and metrics on their own ports."""
    return with_overrides(
        daemon_config(mock_url, sender={"rate_per_second": 300.0, "burst": 30.0}),
        whatsapp={"app_secret": Secret("s3cret")},
        webhook={"enabled": True, "host": "127.0.0.1", "port": webhook_port},
        metrics={"enabled": True, "host": "127.0.0.1", "port": metrics_port},
    )


async def test_a_scrape_during_a_run_sees_the_effective_rate_and_the_receipts_lag_move(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await campaign_with_contacts(conn, tmp_path, 3000, phone_number_id=NUMBER)
    metrics_port, webhook_port = free_port(), free_port()
    # The API allows 100 msg/s, the daemon tries 300: 429s, and the adaptive slow-down.
    async with start_mock_server(MockConfig(limit_per_second=100.0)) as mock:
        config = run_config(mock.base_url, metrics_port, webhook_port)
        async with (
            running_daemon(config, db_dsn, components=default_components(config)),
            aiohttp.ClientSession() as session,
        ):
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            await change_campaign_state(conn, cid, CampaignCommand.START)
            rates: list[float] = []
            while len(set(rates)) < 2 or min(rates) >= 300.0:
                await asyncio.sleep(0.2)
                status, text = await _get(session, metrics_url)
                assert status == 200
                rate = _value(text, "wa_sender_effective_rate_per_second", phone_number_id=NUMBER)
                if rate is not None:
                    rates.append(rate)
            assert (
                _value(text, "wa_sender_configured_rate_per_second", phone_number_id=NUMBER) == 300
            )
            assert min(rates) < 300.0 and len(set(rates)) >= 2  # it moved, below the configured

            lags = await _receipts_lag_moves(conn, db_dsn, session, metrics_url)
            assert max(lags) > 1.0 and lags[-1] < 1.0

            # health on both ports; /metrics only on its own
            base = f"http://127.0.0.1:{webhook_port}"
            assert (await _get(session, f"{base}/metrics"))[0] == 404
            for port in (metrics_port, webhook_port):
                assert (await _get(session, f"http://127.0.0.1:{port}/healthz"))[0] == 200
                assert (await _get(session, f"http://127.0.0.1:{port}/readyz"))[0] == 200

            # a forged webhook POST is counted
            async with session.post(
                f"{base}/webhook", data=b"{}", headers={SIGNATURE_HEADER: "sha256=00"}
            ) as response:
                assert response.status == 403
            text = (await _get(session, metrics_url))[1]
            failed = _value(text, "wa_sender_webhook_signature_failures_total", reason="invalid")
            assert failed == 1
            assert (_value(text, "wa_sender_daemons_live") or 0) >= 1
            assert (_value(text, "wa_sender_daemon_heartbeat_age_seconds") or 99) < 5


async def _receipts_lag_moves(
    conn: asyncpg.Connection, db_dsn: str, session: aiohttp.ClientSession, url: str
) -> list[float]:
    """Receipts made due but held (FOR KEY SHARE: the reconciler's FOR UPDATE SKIP LOCKED
    passes them by) make the lag grow; released, the reconciler takes them and it falls."""
    ids = await conn.fetch(
        "INSERT INTO status_receipts (wamid, status, raw, next_try_at)"
        " SELECT 'wamid.lag-' || i, 'delivered', '{}', now() + interval '1 hour'"
        " FROM generate_series(1, 5) i RETURNING id"
    )
    holder = await asyncpg.connect(db_dsn)
    lags: list[float] = []
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute(
            "SELECT 1 FROM status_receipts WHERE id = ANY($1) FOR KEY SHARE", [r["id"] for r in ids]
        )
        await conn.execute(
            "UPDATE status_receipts SET next_try_at = now() - interval '1 second'"
            " WHERE id = ANY($1)",
            [r["id"] for r in ids],
        )
        while not lags or lags[-1] <= 1.5:
            await asyncio.sleep(0.3)
            lags.append(
                _value((await _get(session, url))[1], "wa_sender_receipts_lag_seconds") or 0
            )
        await hold.rollback()
        while lags[-1] >= 1.0:
            await asyncio.sleep(0.3)
            lags.append(
                _value((await _get(session, url))[1], "wa_sender_receipts_lag_seconds") or 0
            )
    finally:
        await holder.close()
    return lags


async def test_a_second_daemon_on_the_same_metrics_port_fails_in_one_line(
    db_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    env = daemon_env(db_dsn, "http://127.0.0.1:9", metrics_enabled="true", metrics_port=str(port))
    first = await start_daemon(env, tmp_path / "first.log")
    try:
        await _wait_listening(port, first)
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "run", cwd=REPO, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(second.communicate(), 60)
    finally:
        assert await stop_daemon(first) == 0
    lines = err.decode().strip().splitlines()
    assert second.returncode == 1
    assert lines == [
        f"wa-sender: error: cannot serve metrics on 127.0.0.1:{port}: address already in use "
        "(another wa-sender on this host? set a different port)"
    ]


async def _wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Until the daemon's metrics port accepts connections (nothing to await on: poll)."""
    async with asyncio.timeout(60):
        while True:
            assert process.returncode is None, "the first daemon exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return
