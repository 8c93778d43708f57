"""Prometheus metrics of the daemon, served at `/metrics` on an address of their own
(`[metrics] host/port`, loopback by default) so that the public reverse proxy exposes only the
webhook; `/healthz` and `/readyz` are served there too (and still on the webhook port).

`Metrics` owns its own CollectorRegistry (several can live in one process, e.g. in tests), with
prometheus_client's process and platform collectors. Wiring, in `wa-sender run`:
`metrics_component(metrics, webhook_stats)` serves it and runs `metrics_loop`, which samples the
pipeline and the rate limiters every second, the database (receipts lag, pending and orphan
receipts, unknown outcomes, messaging-limit use, live daemons) every `DATABASE_EVERY_S`, and
the campaigns (state counts, automatic pauses) every `CAMPAIGNS_EVERY_S`; the web component
gets `on_stored=[metrics.on_receipts_stored]`.

Every daemon exports the same database-wide gauges (`wa_sender_campaign_contacts`,
`wa_sender_receipts_*`, `wa_sender_unknown_outcomes_awaiting`, ...): aggregate them across
instances with max, not sum.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder

from daemon.core.outcomes import Outcome
from daemon.core.states import CampaignState, ContactState
from daemon.db.campaigns import campaign_progress, list_campaigns
from daemon.db.observe import DatabaseSample, sample
from daemon.db.pool import CONNECTION_ERRORS
from daemon.engine.collectors import (
    LATENCY_BUCKETS,
    SendMetrics,
    WebhookMetrics,
    automatic_pauses,
    code_class,
    pause_reason_class,
)
from daemon.engine.numbers import NumberHealth, number_health
from daemon.engine.recorder import ResultRecorder
from daemon.engine.runtime import Runtime
from daemon.engine.sender import Sender
from daemon.engine.web import (
    DEPS_KEY,
    WebDeps,
    WebhookStats,
    healthz,
    readyz,
    serve_web_app,
)
from daemon.logs import get_logger
from daemon.whatsapp.webhook import ReceiptRow

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "SendMetrics",
    "WebhookMetrics",
    "add_metrics_routes",
    "code_class",
    "metrics_component",
    "metrics_loop",
    "pause_reason_class",
]

log = get_logger(__name__)

SAMPLE_EVERY_S = 1.0
DATABASE_EVERY_S = 2.0
CAMPAIGNS_EVERY_S = 5.0
LIVE_WITHIN_S = 10.0  # a daemon heard from within this long counts in wa_sender_daemons_live
WATCHED_CAMPAIGN_STATES = frozenset({CampaignState.RUNNING, CampaignState.PAUSED})


class Metrics:
    """Every metric of the daemon, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.sends = SendMetrics()
        r.register(self.sends)
        self.webhook = WebhookMetrics()
        r.register(self.webhook)
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
        self.effective_rate = Gauge(
            "wa_sender_effective_rate_per_second",
            "This daemon's send rate per number now: its share of the configured rate after "
            "the adaptive slow-down (429, 130429) and any quality factor",
            ["phone_number_id"],
            registry=r,
        )
        self.configured_rate = Gauge(
            "wa_sender_configured_rate_per_second",
            "This daemon's share of sender.rate_per_second per number (before slow-downs)",
            ["phone_number_id"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "wa_sender_daemon_heartbeat_age_seconds",
            "Seconds since this daemon's last heartbeat reached the database (it stops "
            "sending past a few seconds)",
            registry=r,
        )
        self.daemons_live = Gauge(
            "wa_sender_daemons_live",
            "Daemons that heartbeated within 10 s on the shared database",
            registry=r,
        )
        self.receipts_lag = Gauge(
            "wa_sender_receipts_lag_seconds",
            "Stored -> applied: how long the most overdue status receipt has waited to be "
            "applied since it became due (0: none waits)",
            registry=r,
        )
        self.receipts_pending = Gauge(
            "wa_sender_receipts_pending",
            "Status receipts stored and not applied yet (due, or waiting for their contact)",
            registry=r,
        )
        self.receipts_orphaned = Gauge(
            "wa_sender_receipts_orphaned",
            "Status receipts that never matched a contact (kept, see report orphan_receipts)",
            registry=r,
        )
        self.unknown_outcomes = Gauge(
            "wa_sender_unknown_outcomes_awaiting",
            "Contacts whose last attempt has an unknown outcome, waiting for a receipt "
            "(recovery.unknown_outcome = reconcile) or their retry",
            registry=r,
        )
        self.paused_automatically = Gauge(
            "wa_sender_campaigns_paused_automatically",
            "Campaigns the daemon paused or holds (not an operator), by reason class",
            ["reason"],
            registry=r,
        )
        self.limit_used = Gauge(
            "wa_sender_messaging_limit_used",
            "Unique recipients messaged in the rolling 24 h (the portfolio messaging limit)",
            registry=r,
        )
        self.limit = Gauge(
            "wa_sender_messaging_limit",
            "limits.daily_unique_recipients (0: no limit configured)",
            registry=r,
        )
        self.number_rate_factor = Gauge(
            "wa_sender_number_rate_factor",
            "Number health: the factor Meta's quality events put on the number's rate now "
            "(1: none; [sender] flagged_rate_factor while FLAGGED / DOWNGRADE and the number "
            "sends a MARKETING campaign; from the database)",
            ["phone_number_id"],
            registry=r,
        )
        self.number_quality = Gauge(
            "wa_sender_number_quality",
            "Number health: 1 on the number's last phone_number_quality_update event "
            "(FLAGGED, UNFLAGGED, DOWNGRADE, UPGRADE, THROUGHPUT_UPGRADE, ...)",
            ["phone_number_id", "event"],
            registry=r,
        )
        self.number_throughput_upgraded = Gauge(
            "wa_sender_number_throughput_upgraded",
            "Number health: 1 once Meta upgraded the number's throughput (the bucket may rise "
            "to sender.max_rate_per_second)",
            ["phone_number_id"],
            registry=r,
        )
        self._health_series: set[tuple[str, str]] = set()
        self._campaign_series: set[tuple[str, str]] = set()
        self._number_series: set[str] = set()
        self._pause_series: set[str] = set()

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

    def set_rates(self, rates: Mapping[str, tuple[float, float]]) -> None:
        """Each number's (configured share, effective) rate now."""
        for number, (configured, effective) in rates.items():
            self.configured_rate.labels(number).set(configured)
            self.effective_rate.labels(number).set(effective)
        for number in self._number_series - set(rates):
            self.configured_rate.remove(number)
            self.effective_rate.remove(number)
        self._number_series = set(rates)

    def set_database(self, observed: DatabaseSample, daily_limit: int) -> None:
        """The database-wide gauges from one sample, and the configured messaging limit."""
        self.receipts_lag.set(observed.receipts_lag_s)
        self.receipts_pending.set(observed.receipts_pending)
        self.receipts_orphaned.set(observed.receipts_orphaned)
        self.unknown_outcomes.set(observed.unknown_outcomes)
        self.limit_used.set(observed.limit_used)
        self.limit.set(daily_limit)
        self.daemons_live.set(observed.daemons_live)

    def set_number_health(self, numbers: Sequence[NumberHealth]) -> None:
        """Each reported number's health now (numbers no longer reported disappear)."""
        series = {(n.phone_number_id, n.quality_event) for n in numbers}
        for n in numbers:
            self.number_rate_factor.labels(n.phone_number_id).set(n.rate_factor)
            self.number_quality.labels(n.phone_number_id, n.quality_event).set(1)
            self.number_throughput_upgraded.labels(n.phone_number_id).set(
                1 if n.throughput_upgraded else 0
            )
        for number, event in self._health_series - series:
            self.number_quality.remove(number, event)
        for number in {k for k, _ in self._health_series} - {k for k, _ in series}:
            self.number_rate_factor.remove(number)
            self.number_throughput_upgraded.remove(number)
        self._health_series = series

    async def refresh_number_health(self, conn: asyncpg.Connection) -> None:
        """Read the numbers' health (one round trip)."""
        self.set_number_health(await number_health(conn))

    def set_automatic_pauses(self, by_reason: Mapping[str, int]) -> None:
        """Campaigns paused or held by the daemon, by reason class (others disappear)."""
        for reason, n in by_reason.items():
            self.paused_automatically.labels(reason).set(n)
        for reason in self._pause_series - set(by_reason):
            self.paused_automatically.remove(reason)
        self._pause_series = set(by_reason)

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
        """Read the state counts of the running and paused campaigns, and the automatic
        pauses."""
        counts: dict[int, Mapping[ContactState, int]] = {}
        campaigns = await list_campaigns(conn)
        for campaign in campaigns:
            if campaign.state in WATCHED_CAMPAIGN_STATES:
                counts[campaign.id] = (await campaign_progress(conn, campaign.id)).counts
        self.set_campaign_counts(counts)
        self.set_automatic_pauses(automatic_pauses(campaigns, datetime.now(UTC)))

    async def refresh_database(self, conn: asyncpg.Connection, daily_limit: int) -> None:
        """Read the database-wide gauges (one round trip)."""
        self.set_database(await sample(conn, LIVE_WITHIN_S), daily_limit)

    # -- exposition ---------------------------------------------------------------------

    def install_routes(self, app: web.Application) -> None:
        """A `RouteInstaller`: adds `/metrics` to a web app."""
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
    daily_limit: int = 0,
    every_s: float = SAMPLE_EVERY_S,
    database_every_s: float = DATABASE_EVERY_S,
    campaigns_every_s: float = CAMPAIGNS_EVERY_S,
) -> None:
    """Sample the pipeline and rates every `every_s`, the database every `database_every_s`,
    the campaigns every `campaigns_every_s`."""
    loop = asyncio.get_running_loop()
    next_database = next_campaigns = loop.time()
    waited_s = sender.stats.rate_wait_s
    while True:
        queued, inflight = sender.queued, sender.inflight
        metrics.set_pipeline(
            queued=queued, inflight=inflight, claimed=queued + inflight + recorder.backlog
        )
        metrics.add_rate_limit_wait(sender.stats.rate_wait_s - waited_s)
        waited_s = sender.stats.rate_wait_s
        metrics.set_rates(sender.rates())
        metrics.heartbeat_age.set(sender.heartbeat_age_s())
        now = loop.time()
        if now >= next_database or now >= next_campaigns:
            try:
                async with pool.acquire() as conn:
                    if now >= next_database:
                        next_database = now + database_every_s
                        await metrics.refresh_database(conn, daily_limit)
                        await metrics.refresh_number_health(conn)
                    if now >= next_campaigns:
                        next_campaigns = now + campaigns_every_s
                        await metrics.refresh_campaigns(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("metrics_refresh_failed", error=repr(exc))
        await asyncio.sleep(every_s)


def metrics_component(
    metrics: Metrics, webhook_stats: WebhookStats | None = None
) -> Callable[[Runtime], AbstractAsyncContextManager[None]]:
    """A `run_daemon` component: serves /metrics, /healthz and /readyz on metrics.host/port
    (when metrics.enabled), runs `metrics_loop` as one of the daemon's tasks and counts every
    send. `webhook_stats`: the web component's, for the webhook's families."""

    @asynccontextmanager
    async def component(runtime: Runtime) -> AsyncIterator[None]:
        config = runtime.config
        metrics.webhook.stats = webhook_stats
        runtime.sender.send_observers.append(metrics.sends.on_send)
        async with AsyncExitStack() as stack:
            if config.metrics.enabled:
                app = build_metrics_app(
                    metrics,
                    WebDeps(
                        config, runtime.pool, runtime.stop, writes_blocked=runtime.writes_blocked
                    ),
                )
                await stack.enter_async_context(
                    serve_web_app(app, config.metrics.host, config.metrics.port, what="metrics")
                )
            runtime.extra_tasks["metrics"] = metrics_loop(
                metrics,
                runtime.sender,
                runtime.recorder,
                runtime.pool,
                daily_limit=config.limits.daily_unique_recipients,
            )
            yield

    return component


# -- web ------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_metrics_app(metrics: Metrics, deps: WebDeps) -> web.Application:
    """The metrics server's app: /metrics, and the health routes operators probe."""
    app = web.Application()
    app[DEPS_KEY] = deps
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics_routes(app, metrics)
    return app


def metrics_handler(metrics: Metrics) -> Handler:
    """The text exposition (0.0.4), or OpenMetrics when the scraper asks for it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})

    return handle


def add_metrics_routes(app: web.Application, metrics: Metrics, path: str = "/metrics") -> None:
    """Serve `metrics` at `path` on the app."""
    app.router.add_get(path, metrics_handler(metrics))
