"""The terminal table of a load-test report: one column per system, one row per figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, Callable[[dict[str, Any]], str]]


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _get(run: dict[str, Any], *path: str) -> Any:
    node: Any = run
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _pcts(run: dict[str, Any], *path: str) -> str:
    summary = _get(run, *path)
    if not summary:
        return "-"
    return "/".join(_num(summary.get(k), 1) for k in ("p50", "p90", "p99"))


def _pair(a: Any, b: Any, digits: int = 0) -> str:
    return f"{_num(a, digits)} ({_num(b, digits)})"


ROWS: list[Row] = [
    ("sends/s, mock side", lambda r: _num(_get(r, "throughput", "sends_per_s"))),
    ("sends/s sustained", lambda r: _num(_get(r, "throughput", "sends_per_s_sustained"))),
    ("sends/s end to end", lambda r: _num(_get(r, "throughput", "sends_per_s_end_to_end"))),
    ("receipts applied/s", lambda r: _num(_get(r, "throughput", "receipts_per_s"))),
    ("duration s", lambda r: _num(r.get("duration_s"), 1)),
    ("send ms p50/p90/p99", lambda r: _pcts(r, "latency_ms", "send")),
    ("claim->send ms p50/90/99", lambda r: _pcts(r, "latency_ms", "claim_to_send")),
    ("receipts drain s", lambda r: _num(_get(r, "receipts", "drain_after_last_send_s"), 2)),
    (
        "sender CPU s (in run)",
        lambda r: _pair(
            _get(r, "resources", "sender", "cpu_s"),
            _get(r, "resources", "sender", "cpu_s_during_run"),
            1,
        ),
    ),
    (
        "sender run-queue wait s",
        lambda r: _pair(
            _get(r, "resources", "sender", "runqueue_wait_s"),
            _get(r, "resources", "sender", "runqueue_wait_s_during_run"),
            1,
        ),
    ),
    ("sender peak RSS MB", lambda r: _num(_get(r, "resources", "sender", "peak_rss_mb"), 1)),
    ("mock CPU s", lambda r: _num(_get(r, "resources", "mock", "cpu_s"), 1)),
    (
        "mock run-queue wait s",
        lambda r: _num(_get(r, "resources", "mock", "runqueue_wait_s_during_run"), 1),
    ),
    ("postgres CPU s", lambda r: _num(_get(r, "resources", "postgres", "cpu_s"), 1)),
    (
        "postgres CPU µs/receipt",
        lambda r: _num(_get(r, "postgres", "cpu_us_per_receipt"), 1),
    ),
    (
        "receipt stmts µs/receipt",
        lambda r: _num(_get(r, "postgres", "receipts", "statement_us_per_receipt"), 1),
    ),
    ("WAL bytes/receipt", lambda r: _num(_get(r, "postgres", "wal_bytes_per_receipt"))),
    ("harness CPU s", lambda r: _num(_get(r, "resources", "harness", "cpu_s_during_run"), 1)),
    ("other CPU on machine s", lambda r: _num(_get(r, "resources", "machine", "other_cpu_s"), 1)),
    ("accepted by mock", lambda r: _num(_get(r, "throughput", "accepted"))),
    (
        "dup. contacts (unexpl.)",
        lambda r: _pair(
            _get(r, "invariants", "duplicated_contacts"), _get(r, "invariants", "unexplained")
        ),
    ),
    ("not final", lambda r: _num(_get(r, "invariants", "non_final"))),
    (
        "lost / phantom results",
        lambda r: (
            f"{_num(_get(r, 'invariants', 'accepted_not_recorded'))} / "
            f"{_num(_get(r, 'invariants', 'recorded_not_accepted'))}"
        ),
    ),
    ("receipts pending", lambda r: _num(_get(r, "invariants", "receipts_pending"))),
    (
        "429s (after 1st s)",
        lambda r: _pair(
            _get(r, "invariants", "http_429"), _get(r, "invariants", "http_429_after_first_s")
        ),
    ),
    ("kills", lambda r: _num(_get(r, "chaos", "kills"))),
    ("invariants", lambda r: "OK" if _get(r, "invariants", "ok") else "FAIL"),
]


def scenario_line(scenario: dict[str, Any]) -> str:
    rate = f"{scenario['rate']:g}/s per number" if scenario.get("rate") else "unthrottled"
    limit = (
        f"API limit {scenario['api_limit']:g}/s" if scenario.get("api_limit") else "no API limit"
    )
    parts = [
        f"{scenario['contacts']:,} contacts",
        rate,
        limit,
        f"{scenario['latency_ms']:g} ms",
        f"{scenario['error_rate'] * 100:g}% errors",
        "receipts on" if scenario.get("receipts") else "receipts off",
        f"{scenario['daemons']} daemon(s)",
        f"{scenario['numbers']} number(s)",
        f"concurrency {scenario['concurrency']}",
    ]
    if scenario.get("kill_every_s"):
        parts.append(f"SIGKILL every {scenario['kill_every_s']:g} s")
    return "loadtest: " + ", ".join(parts)


def render(report: dict[str, Any]) -> str:
    runs: dict[str, dict[str, Any]] = report["runs"]
    names = list(runs)
    label_width = max(len(label) for label, _ in ROWS) + 2
    cells = [[fn(runs[name]) for name in names] for _, fn in ROWS]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(names)]
    lines = [scenario_line(report["scenario"]), ""]
    header = " " * label_width + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))
    lines.append(header)
    for (label, _), row in zip(ROWS, cells, strict=True):
        values = "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True))
        lines.append(label.ljust(label_width) + values)
    for name in names:
        per_number = runs[name].get("throughput", {}).get("per_number") or {}
        if per_number:
            each = ", ".join(
                f"{number} {_num(f.get('sends_per_s_sustained'), 1)}"
                for number, f in per_number.items()
            )
            lines.append(f"{name} sustained sends/s per number: {each}")
    by_round = report.get("ratios_by_round")
    if by_round:
        lines.insert(1, f"(the round shown: its ratio is the median of {len(by_round)} rounds)")
    for other, ratio in report.get("ratios", {}).items():
        rounds = ""
        if by_round:
            each = ", ".join(_num(r[other].get("sends_per_s"), 2) for r in by_round)
            rounds = f"; median of {len(by_round)} rounds: {each}"
        lines.append(
            f"wa-sender / {other}: {_num(ratio.get('sends_per_s'), 2)}x sends/s"
            f" ({_num(ratio.get('sends_per_s_end_to_end'), 2)}x end to end){rounds}"
        )
        if other == "receipts-off":
            lines.append(
                "receipts cost, per stored receipt (receipts-on minus receipts-off): PostgreSQL"
                f" {_num(ratio.get('postgres_cpu_us_per_receipt'), 1)} µs CPU,"
                f" {_num(ratio.get('wal_bytes_per_receipt'))} WAL bytes; daemon"
                f" {_num(ratio.get('sender_cpu_us_per_receipt'), 1)} µs; mock"
                f" {_num(ratio.get('mock_cpu_us_per_receipt'), 1)} µs"
            )
    lines.extend(statement_lines(runs))
    return "\n".join(lines)


def statement_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The receipts path's statements of each run with receipts: µs (planning included) and
    WAL bytes per stored receipt, calls and rows per call (pg_stat_statements)."""
    lines: list[str] = []
    for name, run in runs.items():
        receipts = _get(run, "postgres", "receipts")
        if not receipts:
            continue
        lines.append(f"{name}: receipt statements per stored receipt (pg_stat_statements)")
        for statement, f in receipts["by_statement"].items():
            lines.append(
                f"  {statement:<28} {f['us_per_receipt']:>7.2f} µs"
                f" (plan {f['plan_us_per_receipt']:.2f})  {f['wal_bytes_per_receipt']:>7.1f} B WAL"
                f"  {f['calls']:>6} calls  {_num(f['rows_per_call'], 1)} rows/call"
            )
    return lines
