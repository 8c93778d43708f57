"""The metric families built at scrape time from plain counters (no prometheus_client lock on
the hot path), and the label rules: `code_class` of a send, `pause_reason_class` of a pause."""

from __future__ import annotations

import bisect
import collections
import re
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.core.model import Campaign
from daemon.core.outcomes import Outcome, OutcomeKind
from daemon.core.states import CampaignState
from daemon.db.campaigns import ADMIN_PAUSE_REASON
from daemon.engine.web import WebhookStats

# Cloud API answers in 100 ms - 2 s; the default request timeout is 10 s.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUCKET_LABELS = (*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf")  # le="0.25", ..., "+Inf"
_ACCEPTED = OutcomeKind.ACCEPTED
_ACCEPTED_LABELS = (_ACCEPTED, "none")  # what `code_class` gives every accepted send


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


_CODE_IN_REASON = re.compile(r"\((\d{1,12})\)|unknown error code (\d{1,12})")
_HTTP_IN_REASON = re.compile(r"\bHTTP (\d{3})\b")
_WORDS = re.compile(r"[a-z]+")


def pause_reason_class(reason: str) -> str:
    """A campaign's automatic pause or hold reason as a label of bounded cardinality: the
    error code (`code_190`), `messaging_limit`, `http_503`, else its first words without
    digits (reasons come from the daemon's own texts, timestamps and counts dropped)."""
    if match := _CODE_IN_REASON.search(reason):
        return f"code_{match.group(1) or match.group(2)}"
    lowered = reason.lower()
    if lowered.startswith("messaging limit"):
        return "messaging_limit"
    if match := _HTTP_IN_REASON.search(reason):
        return f"http_{match.group(1)}"
    words = _WORDS.findall(lowered.partition(":")[0])[:4]
    return "_".join(words) or "other"


def automatic_pauses(campaigns: Iterable[Campaign], now: datetime) -> dict[str, int]:
    """Campaigns the daemon (not an operator) stopped: paused with a reason other than the
    admin's, or running but held (messaging limit, maintenance); counted by reason class."""
    counts: collections.Counter[str] = collections.Counter()
    for c in campaigns:
        if (
            c.state is CampaignState.PAUSED
            and c.pause_reason
            and (c.pause_reason != ADMIN_PAUSE_REASON)
        ):
            counts[pause_reason_class(c.pause_reason)] += 1
        elif (
            c.state is CampaignState.RUNNING
            and c.hold_reason
            and (c.hold_until is None or c.hold_until > now)
        ):
            counts[pause_reason_class(c.hold_reason)] += 1
    return dict(counts)


class WebhookMetrics(Collector):
    """`wa_sender_webhook_responses_total{code}` and `wa_sender_webhook_signature_failures_total
    {reason}`, read at scrape time from the web component's WebhookStats (401: signature
    missing, 403: signature invalid)."""

    def __init__(self, stats: WebhookStats | None = None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """The metric families, built at scrape time."""
        responses = CounterMetricFamily(
            "wa_sender_webhook_responses",
            "Webhook POSTs answered, by HTTP status code",
            labels=["code"],
        )
        failures = CounterMetricFamily(
            "wa_sender_webhook_signature_failures",
            "Webhook POSTs refused for their X-Hub-Signature-256 (missing or invalid)",
            labels=["reason"],
        )
        counted = self.stats.responses if self.stats is not None else collections.Counter()
        for code, n in sorted(counted.items()):
            responses.add_metric([str(code)], n)
        failures.add_metric(["missing"], counted.get(401, 0))
        failures.add_metric(["invalid"], counted.get(403, 0))
        yield responses
        yield failures
