"""Prometheus families of the web server's counters (`WebhookStats`): webhook answers by
status code, replays acknowledged without storing, connections open and how they ended, and
the bytes of bodies being read before their signature is known. Built at scrape time from
plain counters, like the send metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.engine.web import WebhookStats


class WebhookCollector(Collector):
    """The `wa_sender_webhook_*` families of one web server."""

    def __init__(self, stats: WebhookStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """The metric families, from the counters now."""
        stats = self._stats
        responses = CounterMetricFamily(
            "wa_sender_webhook_responses", "Webhook POSTs answered, by HTTP status", labels=["code"]
        )
        for code, n in sorted(stats.responses.items()):
            responses.add_metric([str(code)], n)
        yield responses
        yield CounterMetricFamily(
            "wa_sender_webhook_replays",
            "Signed webhook bodies seen again within the replay window: acknowledged, not stored",
            value=stats.replays,
        )
        yield CounterMetricFamily(
            "wa_sender_webhook_malformed_items",
            "Items of signed webhook POSTs left out because they could not be read (the rest of"
            " the POST was applied and answered 200)",
            value=stats.malformed,
        )
        listening = stats.listening
        inbound = CounterMetricFamily(
            "wa_sender_inbound",
            "What the webhook applied besides statuses: inbound messages, opt-outs, contacts"
            " stopped by them, marketing preferences, template and number events, campaigns"
            " paused and resumed by template events",
            labels=["kind"],
        )
        for kind in (
            "inbound",
            "opt_outs",
            "contacts_stopped",
            "preferences",
            "template_events",
            "campaigns_paused",
            "campaigns_resumed",
            "number_events",
        ):
            inbound.add_metric([kind], getattr(listening, kind))
        yield inbound
        connections = stats.connections
        yield GaugeMetricFamily(
            "wa_sender_webhook_connections", "Open connections to the web server", connections.open
        )
        closed = CounterMetricFamily(
            "wa_sender_webhook_connections_closed",
            "Connections the server closed on a bound: too_many (over webhook.max_connections), "
            "idle, header_timeout, headers_too_large, request_timeout",
            labels=["reason"],
        )
        for reason, n in sorted(connections.closed.items()):
            closed.add_metric([reason], n)
        yield closed
        budget = stats.bodies
        pending = GaugeMetricFamily(
            "wa_sender_webhook_pending_body_bytes",
            "Bytes of webhook bodies held now (within webhook.max_pending_bytes)",
        )
        pending.add_metric([], budget.used if budget is not None else 0)
        yield pending
        refused = CounterMetricFamily(
            "wa_sender_webhook_bodies_refused",
            "Webhook bodies refused (503) because webhook.max_pending_bytes was in use",
        )
        refused.add_metric([], budget.refused if budget is not None else 0)
        yield refused
