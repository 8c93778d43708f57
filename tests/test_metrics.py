"""Prometheus metrics: what `Metrics` exports, the /metrics, /healthz and /readyz handlers, the
sampling loop, and that the Grafana dashboard only queries metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from daemon.core.outcomes import (
    Outcome,
    OutcomeKind,
    classify_response,
    classify_transport_error,
)
from daemon.core.states import CampaignCommand, ContactState
from daemon.db.campaigns import change_campaign_state
from daemon.db.pool import open_pool
from daemon.engine.metrics import (
    Metrics,
    add_metrics_routes,
    code_class,
    metrics_component,
    metrics_loop,
)
from daemon.engine.web import WebhookStats
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.whatsapp.webhook import ReceiptRow
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.data import campaign_with_contacts

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bwa_sender_[a-z0-9_]+")


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def busy_metrics() -> Metrics:
    """A Metrics that has seen a bit of everything."""
    metrics = Metrics()
    metrics.observe_send(Outcome(OutcomeKind.ACCEPTED, wamid="wamid.x", http_status=200), 0.12)
    metrics.observe_send(
        classify_response(400, {"error": {"code": 131026, "message": "x"}}, attempt=1), 0.3
    )
    metrics.observe_send(classify_transport_error("timeout"), 10.0)
    metrics.observe_receipts({"sent": 3, "delivered": 2, "read": 1, "failed": 1})
    metrics.add_rate_limit_wait(0.25)
    metrics.set_pipeline(queued=5, inflight=3, claimed=9)
    metrics.set_campaign_counts({7: {ContactState.INITIAL: 10, ContactState.SENT: 4}})
    metrics.set_rates({"106540352242922": (80.0, 40.0)})
    metrics.set_automatic_pauses({"code_190": 1})
    metrics.webhook.stats = WebhookStats()
    metrics.webhook.stats.responses.update({200: 5, 401: 1, 403: 2})
    return metrics


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, item in node.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def dashboard_queries() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [
        v for k, v in _walk(document) if k in ("expr", "query", "definition") and isinstance(v, str)
    ]


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = {name for name, _ in samples(busy_metrics())}
    used = {name for expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    assert used, "no wa_sender metric found in the dashboard"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_dashboard_covers_the_required_panels() -> None:
    document = json.loads(DASHBOARD.read_text())
    panels = document["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = " ".join(dashboard_queries())
    assert "sum by (outcome) (rate(wa_sender_sends_total" in exprs
    assert (
        "histogram_quantile(0.99, sum by (le) (rate(wa_sender_send_latency_seconds_bucket" in exprs
    )
    assert "sum by (code_class, outcome)" in exprs
    assert 'wa_sender_receipts_total{status="read"}' in exprs
    assert "max by (campaign_id, state) (wa_sender_campaign_contacts" in exprs
    # The campaign gauges come from the shared database: never summed across daemons raw.
    assert "sum(wa_sender_campaign_contacts" not in exprs
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_required_metric_names_and_types() -> None:
    text = busy_metrics().exposition().decode()
    families = text_string_to_metric_families(text)
    types = {f.name: f.type for f in families if not f.name.endswith("_created")}
    # The operator's families: tests/test_metrics_families.py; process_* and python_*.
    assert (
        types.items()
        >= {
            "wa_sender_sends": "counter",
            "wa_sender_receipts": "counter",
            "wa_sender_send_latency_seconds": "histogram",
            "wa_sender_rate_limit_wait_seconds": "counter",
            "wa_sender_claimed_contacts": "gauge",
            "wa_sender_inflight_sends": "gauge",
            "wa_sender_queued_contacts": "gauge",
            "wa_sender_campaign_contacts": "gauge",
        }.items()
    )


def test_sends_are_counted_by_outcome_and_code() -> None:
    metrics = busy_metrics()
    assert value(metrics, "wa_sender_sends_total", outcome="accepted", code_class="none") == 1
    assert value(metrics, "wa_sender_sends_total", outcome="permanent", code_class="131026") == 1
    assert value(metrics, "wa_sender_sends_total", outcome="transient", code_class="none") == 1
    assert value(metrics, "wa_sender_send_latency_seconds_count") == 3
    assert value(metrics, "wa_sender_send_latency_seconds_sum") == pytest.approx(10.42)
    assert value(metrics, "wa_sender_send_latency_seconds_bucket", le="0.25") == 1
    assert value(metrics, "wa_sender_send_latency_seconds_bucket", le="5.0") == 2
    # Prometheus buckets count values <= their bound: the 10.0 s timeout lands in le="10.0".
    assert value(metrics, "wa_sender_send_latency_seconds_bucket", le="10.0") == 3
    assert value(metrics, "wa_sender_send_latency_seconds_bucket", le="+Inf") == 3
    assert value(metrics, "wa_sender_receipts_total", status="delivered") == 2
    assert value(metrics, "wa_sender_rate_limit_wait_seconds_total") == 0.25
    assert value(metrics, "wa_sender_claimed_contacts") == 9


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome(OutcomeKind.ACCEPTED, http_status=200), "none"),
        (Outcome(OutcomeKind.THROTTLED, http_status=429, error_code=130429), "130429"),
        (Outcome(OutcomeKind.TRANSIENT, http_status=503), "http_503"),
        (Outcome(OutcomeKind.TRANSIENT, error_title="transport error: timeout"), "none"),
        (Outcome(OutcomeKind.PERMANENT, error_code=131026), "131026"),
    ],
)
def test_code_class(outcome: Outcome, expected: str) -> None:
    assert code_class(outcome) == expected


def test_two_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_receipts({"read": 2})
    assert value(a, "wa_sender_receipts_total", status="read") == 2
    assert value(b, "wa_sender_receipts_total", status="read") is None


def test_negative_waits_and_empty_receipt_counts_change_nothing() -> None:
    metrics = Metrics()
    metrics.add_rate_limit_wait(-1.0)
    metrics.observe_receipts({"read": 0})
    assert value(metrics, "wa_sender_rate_limit_wait_seconds_total") == 0
    assert value(metrics, "wa_sender_receipts_total", status="read") is None


def test_campaigns_no_longer_listed_disappear() -> None:
    metrics = Metrics()
    metrics.set_campaign_counts({1: {ContactState.INITIAL: 5}, 2: {ContactState.SENT: 1}})
    assert value(metrics, "wa_sender_campaign_contacts", campaign_id="1", state="initial") == 5
    assert value(metrics, "wa_sender_campaign_contacts", campaign_id="1", state="read") == 0
    metrics.set_campaign_counts({2: {ContactState.SENT: 2}})
    assert value(metrics, "wa_sender_campaign_contacts", campaign_id="1", state="initial") is None
    assert value(metrics, "wa_sender_campaign_contacts", campaign_id="2", state="sent") == 2
    series = [k for k in samples(metrics) if k[0] == "wa_sender_campaign_contacts"]
    assert len(series) == len(ContactState)


async def _campaign(conn: asyncpg.Connection, state: str, contact_states: list[str]) -> int:
    campaign_id = int(
        await conn.fetchval(
            "INSERT INTO campaigns (name, template_name, template_language, phone_number_id,"
            " state) VALUES ('c', 't', 'en', '1', $1) RETURNING id",
            state,
        )
    )
    await conn.executemany(
        "INSERT INTO contacts (campaign_id, phone, state) VALUES ($1, $2, $3)",
        [(campaign_id, f"1555000{i:04d}", s) for i, s in enumerate(contact_states)],
    )
    return campaign_id


async def test_refresh_reads_running_and_paused_campaigns(conn: asyncpg.Connection) -> None:
    running = await _campaign(conn, "running", ["initial", "initial", "sent"])
    paused = await _campaign(conn, "paused", ["delivered"])
    finished = await _campaign(conn, "finished", ["read"])
    metrics = Metrics()
    await metrics.refresh_campaigns(conn)
    assert (
        value(metrics, "wa_sender_campaign_contacts", campaign_id=str(running), state="initial")
        == 2
    )
    assert (
        value(metrics, "wa_sender_campaign_contacts", campaign_id=str(paused), state="delivered")
        == 1
    )
    assert (
        value(metrics, "wa_sender_campaign_contacts", campaign_id=str(finished), state="read")
        is None
    )


@dataclass
class FakeStats:
    rate_wait_s: float = 0.0


@dataclass
class FakeSender:
    queued: int = 0
    inflight: int = 0
    stats: FakeStats = field(default_factory=FakeStats)

    def rates(self) -> dict[str, tuple[float, float]]:
        return {"1000001": (80.0, 40.0)}

    def heartbeat_age_s(self) -> float:
        return 0.5


@dataclass
class FakeRecorder:
    backlog: int = 0


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll: the state comes from another thread or task, there is no event to await."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_loop_samples_the_pipeline_and_the_campaigns(
    conn: asyncpg.Connection, db_dsn: str
) -> None:
    campaign_id = await _campaign(conn, "running", ["initial", "sent"])
    sender = FakeSender(queued=4, inflight=2, stats=FakeStats(rate_wait_s=5.0))
    recorder = FakeRecorder(backlog=1)
    metrics = Metrics()
    async with open_pool(db_dsn, min_size=1, max_size=1) as pool:
        task = asyncio.create_task(
            metrics_loop(metrics, sender, recorder, pool, every_s=0.01, campaigns_every_s=0.01)
        )
        try:
            await _until(lambda: value(metrics, "wa_sender_queued_contacts") == 4)
            sender.stats.rate_wait_s = 5.5  # waits before the loop started are not counted
            await _until(lambda: value(metrics, "wa_sender_rate_limit_wait_seconds_total") == 0.5)
            assert value(metrics, "wa_sender_inflight_sends") == 2
            rate = value(metrics, "wa_sender_effective_rate_per_second", phone_number_id="1000001")
            assert rate == 40.0
            assert value(metrics, "wa_sender_daemon_heartbeat_age_seconds") == 0.5
            assert value(metrics, "wa_sender_claimed_contacts") == 7
            assert (
                value(
                    metrics,
                    "wa_sender_campaign_contacts",
                    campaign_id=str(campaign_id),
                    state="sent",
                )
                == 1
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_metrics_endpoint_serves_the_text_exposition() -> None:
    app = web.Application()
    add_metrics_routes(app, busy_metrics())
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "wa_sender_sends" in names
    assert "# TYPE wa_sender_send_latency_seconds histogram" in text


async def test_route_installer_and_receipt_observer_for_the_web_component() -> None:
    metrics = Metrics()
    metrics.on_receipts_stored(
        [
            ReceiptRow(f"wamid.{i}", status, None, None, None, None, None, None, {})
            for i, status in enumerate(["read", "read", "failed"])
        ]
    )
    app = web.Application()
    metrics.install_routes(app)
    async with TestClient(TestServer(app)) as client:
        text = await (await client.get("/metrics")).text()
    assert 'wa_sender_receipts_total{status="read"} 2.0' in text
    assert 'wa_sender_receipts_total{status="failed"} 1.0' in text


async def test_metrics_endpoint_speaks_openmetrics_when_asked() -> None:
    app = web.Application()
    add_metrics_routes(app, busy_metrics())
    async with TestClient(TestServer(app)) as client:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_the_daemon_feeds_its_metrics(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Wired as `wa-sender run` does: the component adds the send hook and the sampling."""
    campaign_id = await campaign_with_contacts(conn, tmp_path, 200)
    metrics = Metrics()
    hooks: dict[str, Any] = {"components": [metrics_component(metrics)]}
    async with (
        start_mock_server(MockConfig()) as mock,
        running_daemon(daemon_config(mock.base_url), db_dsn, **hooks),
    ):
        await change_campaign_state(conn, campaign_id, CampaignCommand.START)
        assert await wait_until_final(conn, campaign_id) == {"sent": 200}
        await _until(lambda: value(metrics, "wa_sender_inflight_sends") is not None)
    assert value(metrics, "wa_sender_sends_total", outcome="accepted", code_class="none") == 200
    assert value(metrics, "wa_sender_send_latency_seconds_count") == 200
