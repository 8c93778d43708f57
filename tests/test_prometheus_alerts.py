"""deploy/prometheus-alerts.yml: valid rules (promtool when installed), the alerts operators
need, and expressions that use only metrics the daemon exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.helpers.proc import REPO
from tests.test_metrics import busy_metrics, samples

ALERTS = REPO / "deploy" / "prometheus-alerts.yml"
PROMTOOL = shutil.which("promtool")
# Made by Prometheus itself for every scrape target, not by the daemon.
PROMETHEUS_OWN = {"up"}
IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b")
# PromQL words that look like names: functions, aggregations, keywords, label names.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "by", "without", "and", "or",
    "unless", "on", "ignoring", "bool", "absent", "job", "reason", "instance", "outcome",
}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One alerting rule as the file states it."""

    alert: str
    expr: str
    for_: str | None
    labels: dict[str, str]
    annotations: dict[str, str]


def parse_rules(text: str) -> list[Rule]:
    """The rules of the one group, read from the file's own layout (one `- alert:` per rule,
    every value on its line): no YAML library is a dependency."""
    rules: list[Rule] = []
    current: dict[str, object] | None = None
    section: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            current = {"alert": stripped.split(":", 1)[1].strip(), "labels": {}, "annotations": {}}
            rules.append(current)  # type: ignore[arg-type]
            section = None
            continue
        if current is None:
            continue
        key, _, value = stripped.partition(":")
        value = value.strip()
        if key in ("labels", "annotations") and not value:
            section = current[key]  # type: ignore[assignment]
        elif key in ("expr", "for"):
            current[key] = value
            section = None
        elif section is not None:
            section[key] = value.strip('"')
    return [
        Rule(
            str(r["alert"]),
            str(r["expr"]),
            r.get("for"),  # type: ignore[arg-type]
            r["labels"],  # type: ignore[arg-type]
            r["annotations"],  # type: ignore[arg-type]
        )
        for r in rules  # type: ignore[union-attr]
    ]


RULES = parse_rules(ALERTS.read_text())


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers outside label matchers and
    ranges, that are not PromQL words or numbers."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    return {
        name
        for name in IDENTIFIER.findall(without_ranges)
        if name not in PROMQL_WORDS and not name.replace(".", "").isdigit()
    }


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_promtool_checks_the_rules() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout


def test_every_rule_has_an_expression_a_severity_and_a_summary() -> None:
    assert len({r.alert for r in RULES}) == len(RULES) >= 8
    for rule in RULES:
        assert rule.expr and rule.labels.get("severity") in {"critical", "warning"}, rule
        assert rule.annotations.get("summary"), rule


def test_expressions_use_only_exported_metrics() -> None:
    exported = {name for name, _ in samples(busy_metrics())}
    for rule in RULES:
        used = metric_names(rule.expr)
        assert used, rule.alert
        assert used <= exported | PROMETHEUS_OWN, f"{rule.alert}: {used - exported}"


@pytest.mark.parametrize(
    ("alert", "fragment"),
    [
        ("WaSenderDaemonDown", 'up{job="wa-sender"} == 0'),
        ("WaSenderCampaignPausedAutomatically", "wa_sender_campaigns_paused_automatically"),
        ("WaSender429Storm", 'wa_sender_sends_total{outcome="throttled"}'),
        ("WaSenderReceiptsLagging", "max(wa_sender_receipts_lag_seconds) > 60"),
        ("WaSenderMessagingLimitNearlyUsed", "> 0.9"),
        ("WaSenderWebhookSignatureFailures", "wa_sender_webhook_signature_failures_total"),
    ],
)
def test_the_alerts_operators_need_are_there(alert: str, fragment: str) -> None:
    [rule] = [r for r in RULES if r.alert == alert]
    assert fragment in rule.expr


def test_the_scan_finds_metric_names_and_nothing_else() -> None:
    expr = 'sum(rate(wa_sender_sends_total{outcome="throttled"}[5m])) / max(up > 0) > 0.9'
    assert metric_names(expr) == {"wa_sender_sends_total", "up"}
