"""Prometheus metrics of the daemon, served at `/metrics` by the daemon's web server.

`Metrics` owns its own CollectorRegistry (several can live in one process, e.g. in tests).
Wiring, in `wa-sender run`: `run_daemon(on_send=metrics.sends.on_send)`, the web component with
`extra_routes=[metrics.install_routes]` and `on_stored=[metrics.on_receipts_stored]`, and
`metrics_component(metrics)`, whose loop samples the pipeline every second and the
per-campaign state counts of running and paused campaigns every few seconds.

Every daemon exports the same `wa_sender_campaign_contacts` (it comes from the shared
database): aggregate it across instances with max, not sum.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.core.outcomes import Outcome, OutcomeKind
from daemon.core.states import CampaignState, ContactState
from daemon.db.campaigns import campaign_progress, list_campaigns
from daemon.db.pool import CONNECTION_ERRORS
from daemon.engine.recorder import ResultRecorder
from daemon.engine.runtime import Runtime
from daemon.engine.sender import Sender
from daemon.logs import get_logger
from daemon.whatsapp.webhook import ReceiptRow

log = get_logger(__name__)

SAMPLE_EVERY_S = 1.0
CAMPAIGNS_EVERY_S = 5.0
# Cloud API answers in 100 ms - 2 s; the default request timeout is 10 s.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUCKET_LABELS = (*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf")  # le="0.25", ..., "+Inf"
_ACCEPTED = OutcomeKind.ACCEPTED
_ACCEPTED_LABELS = (_ACCEPTED, "none")  # what `code_class` gives every accepted send
WATCHED_CAMPAIGN_STATES = frozenset({CampaignState.RUNNING, CampaignState.PAUSED})


def code_class(outcome: Outcome) -> str:
    """The `code_class` label: the Graph error code, else `http_<status>` for an error without
    a code, else `none` (accepted sends, transport errors)."""
    if outcome.error_code is not None:
        return str(outcome.error_code)
    if outcome.http_status is not None and not 200 <= outcome.http_status < 300:
        return f"http_{outcome.http_status}"
    return "none"


class SendMetrics(Collector):
    """`wa_sender_sends_total` and `wa_sender_send_latency_seconds`, counted in plain Python on
    every send and turned into metric families only when scraped: prometheus_client's own
    Counter and Histogram take a lock per update, 2.4 % of the daemon's CPU at full speed. The
    daemon's single event loop is the only writer."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self._sum = 0.0

    def observe(self, outcome: Outcome, seconds: float) -> None:
        """Count one send outside the sender (tests, benchmarks)."""
        self.on_send(None, outcome, seconds)

    def on_send(self, _work: object, outcome: Outcome, seconds: float) -> None:
        """A `SendObserver`: the sender calls it on every send, with no call in between."""
        if outcome.kind is _ACCEPTED:
            labels = _ACCEPTED_LABELS
        else:
            labels = (outcome.kind, code_class(outcome))  # the StrEnum member is its value
        self._counts[labels] = self._counts.get(labels, 0) + 1
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        """The metric families, built at scrape time."""
        sends = CounterMetricFamily(
            "wa_sender_sends",
            "Send attempts that got an answer, by outcome and error code",
            labels=["outcome", "code_class"],
        )
        for labels, count in sorted(self._counts.items()):
            sends.add_metric(list(labels), count)
        yield sends
        cumulative, total = [], 0
        for label, count in zip(_BUCKET_LABELS, self._buckets, strict=True):
            total += count
            cumulative.append((label, total))
        latency = HistogramMetricFamily(
            "wa_sender_send_latency_seconds", "Duration of one send request to the Cloud API"
        )
        latency.add_metric([], cumulative, sum_value=self._sum)
        yield latency


class Metrics:
    """Every metric of the daemon, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sends = SendMetrics()
        r.register(self.sends)
        self.receipts = Counter(
            "wa_sender_receipts", "Status receipts received, by status", ["status"], registry=r
        )
        self.rate_limit_wait = Counter(
            "wa_sender_rate_limit_wait_seconds",
            "Time sends waited for the per-number rate limiter",
            registry=r,
        )
        self.claimed = Gauge(
            "wa_sender_claimed_contacts",
            "Contacts this daemon holds claimed: queued, in flight or awaiting their record",
            registry=r,
        )
        self.inflight = Gauge("wa_sender_inflight_sends", "Send requests in flight", registry=r)
        self.queued = Gauge(
            "wa_sender_queued_contacts", "Claimed contacts waiting for the rate limiter", registry=r
        )
        self.campaign_contacts = Gauge(
            "wa_sender_campaign_contacts",
            "Contacts of running and paused campaigns by state (from the database)",
            ["campaign_id", "state"],
            registry=r,
        )
        self._campaign_series: set[tuple[str, str]] = set()

    # -- fed by the engine --------------------------------------------------------------

    def observe_send(self, outcome: Outcome, seconds: float) -> None:
        """Count one send and its duration."""
        self.sends.observe(outcome, seconds)

    def on_receipts_stored(self, rows: Sequence[ReceiptRow]) -> None:
        """A `ReceiptObserver` of the web component: the rows of one stored webhook POST."""
        self.observe_receipts(collections.Counter(row.status for row in rows))

    def observe_receipts(self, status_counts: Mapping[str, int]) -> None:
        """Receipts stored by one webhook call: {"delivered": 3, "read": 1, ...}."""
        for status, n in status_counts.items():
            if n > 0:
                self.receipts.labels(status).inc(n)

    def add_rate_limit_wait(self, seconds: float) -> None:
        """Add time sends waited for the rate limiter."""
        if seconds > 0:
            self.rate_limit_wait.inc(seconds)

    def set_pipeline(self, *, queued: int, inflight: int, claimed: int) -> None:
        """The sender's pipeline now: queued, in flight, claimed."""
        self.queued.set(queued)
        self.inflight.set(inflight)
        self.claimed.set(claimed)

    def set_campaign_counts(self, counts: Mapping[int, Mapping[ContactState, int]]) -> None:
        """Replace the per-campaign series; campaigns no longer listed disappear."""
        series: set[tuple[str, str]] = set()
        for campaign_id, by_state in counts.items():
            for state in ContactState:
                labels = (str(campaign_id), state.value)
                self.campaign_contacts.labels(*labels).set(by_state.get(state, 0))
                series.add(labels)
        for labels in self._campaign_series - series:
            self.campaign_contacts.remove(*labels)
        self._campaign_series = series

    async def refresh_campaigns(self, conn: asyncpg.Connection) -> None:
        """Read the state counts of the running and paused campaigns."""
        counts: dict[int, Mapping[ContactState, int]] = {}
        for campaign in await list_campaigns(conn):
            if campaign.state in WATCHED_CAMPAIGN_STATES:
                counts[campaign.id] = (await campaign_progress(conn, campaign.id)).counts
        self.set_campaign_counts(counts)

    # -- exposition ---------------------------------------------------------------------

    def install_routes(self, app: web.Application) -> None:
        """A `RouteInstaller` of the web component: adds `/metrics`."""
        add_metrics_routes(app, self)

    def exposition(self) -> bytes:
        """The text exposition format 0.0.4."""
        return generate_latest(self.registry)


async def metrics_loop(
    metrics: Metrics,
    sender: Sender,
    recorder: ResultRecorder,
    pool: asyncpg.Pool,
    *,
    every_s: float = SAMPLE_EVERY_S,
    campaigns_every_s: float = CAMPAIGNS_EVERY_S,
) -> None:
    """Sample the pipeline every `every_s`, the campaign counts every `campaigns_every_s`."""
    loop = asyncio.get_running_loop()
    next_campaigns = loop.time()
    waited_s = sender.stats.rate_wait_s
    while True:
        queued, inflight = sender.queued, sender.inflight
        metrics.set_pipeline(
            queued=queued, inflight=inflight, claimed=queued + inflight + recorder.backlog
        )
        metrics.add_rate_limit_wait(sender.stats.rate_wait_s - waited_s)
        waited_s = sender.stats.rate_wait_s
        if loop.time() >= next_campaigns:
            next_campaigns = loop.time() + campaigns_every_s
            try:
                async with pool.acquire() as conn:
                    await metrics.refresh_campaigns(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("metrics_refresh_failed", error=repr(exc))
        await asyncio.sleep(every_s)


def metrics_component(
    metrics: Metrics,
) -> Callable[[Runtime], AbstractAsyncContextManager[None]]:
    """A `run_daemon` component that runs `metrics_loop` as one of the daemon's tasks."""

    @asynccontextmanager
    async def component(runtime: Runtime) -> AsyncIterator[None]:
        runtime.extra_tasks["metrics"] = metrics_loop(
            metrics, runtime.sender, runtime.recorder, runtime.pool
        )
        runtime.sender.send_observers.append(metrics.sends.on_send)
        yield

    return component


# -- web ------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(metrics: Metrics) -> Handler:
    """The text exposition (0.0.4), or OpenMetrics when the scraper asks for it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})

    return handle


def add_metrics_routes(app: web.Application, metrics: Metrics, path: str = "/metrics") -> None:
    """Serve `metrics` at `path` on the app."""
    app.router.add_get(path, metrics_handler(metrics))
