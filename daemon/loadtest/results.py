"""One run's figures, assembled from what was collected: the JSON-able result of a system.

Throughput comes from two sides: the mock's acceptance timestamps (what left, independent of
the sender's bookkeeping) and the database (``contacts.sent_at``, receipts stored and applied).
Send latency is the sender's own view (time around its POST, from the probe); claim-to-send is
``contacts.claimed_at`` to the mock's acceptance of that attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from daemon.loadtest import analysis, pgstats
from daemon.loadtest.latency import Histogram, merged
from daemon.loadtest.mockproc import AcceptedLog
from daemon.loadtest.sampling import ProcessSampler

THROTTLE_CODE = "130429"


@dataclass
class ReceiptFigures:
    by_state: dict[str, int] = field(default_factory=dict)
    received_at: list[float] = field(default_factory=list)  # epoch seconds, one per receipt
    processed_at: list[float] = field(default_factory=list)
    mock: dict[str, int] = field(default_factory=dict)


@dataclass
class RunData:
    system: str
    contacts: int
    t0: float
    t_done: float
    completed: bool
    accepted: AcceptedLog
    mock_stats: dict[str, Any]
    sampler: ProcessSampler
    latency: dict[int, Histogram]
    rows: analysis.ContactRows | None = None
    receipts: ReceiptFigures | None = None
    kills: list[float] = field(default_factory=list)
    throttled_at: list[float] | None = None  # when the sender saw each 429 (its logs)
    throttle_series: list[tuple[float, int]] = field(default_factory=list)  # mock polls
    opt_outs: dict[str, int] | None = None  # --reply-rate runs: harness.opt_out_figures
    postgres: dict[str, Any] | None = None  # pgstats.finish: WAL bytes, statements
    notes: dict[str, Any] = field(default_factory=dict)


def build(data: RunData) -> dict[str, Any]:
    t0 = data.t0
    times = list(data.accepted.accepted_at)
    accepted = analysis.parse_accepted(data.accepted.callback, data.accepted.wamid, times)
    rows = data.rows
    length = max(1, math.ceil(data.t_done - t0) + 1)
    sends = analysis.throughput(times, t0)
    series: dict[str, Any] = {
        "t": list(range(length)),
        "sends_mock": analysis.per_second(times, t0, length),
    }
    if rows is not None:
        sent_times = [t for t in rows.sent_at if t is not None]
        series["sends_db"] = analysis.per_second(sent_times, t0, length)

    send_latency = merged(data.latency.values())
    t0_second = int(t0)
    latency: dict[str, Any] = {
        "send": send_latency.summary() if send_latency.count else None,
        "send_measured_by": "sender-side probe around each POST" if send_latency.count else None,
    }
    series["send_latency_ms"] = analysis.percentile_series(data.latency, t0_second, length)
    if rows is not None:
        claim_total, claim_by_second = analysis.claim_to_send(accepted, rows)
        latency["claim_to_send"] = claim_total.summary() if claim_total.count else None
        series["claim_to_send_ms"] = analysis.percentile_series(claim_by_second, t0_second, length)

    result: dict[str, Any] = {
        "system": data.system,
        "contacts": data.contacts,
        "completed": data.completed,
        "duration_s": round(data.t_done - t0, 3),
        "throughput": {
            "sends_per_s": sends["per_s"],
            "sends_per_s_sustained": sends["sustained_per_s"],
            "sends_per_s_end_to_end": round(data.contacts / (data.t_done - t0), 1)
            if data.t_done > t0
            else None,
            "slowest_full_second": sends.get("min_full_second"),
            "fastest_full_second": sends.get("max_full_second"),
            "first_send_s": sends["first_s"],
            "last_send_s": sends.get("last_s"),
            "accepted": sends["count"],
        },
        "latency_ms": latency,
        "receipts": _receipts(data, t0, length, series, times),
        "resources": _resources(data),
        "postgres": None,
        "invariants": _invariants(data, accepted, times),
        "mock": {
            "requests": data.mock_stats.get("requests"),
            "accepted": data.mock_stats.get("accepted"),
            "outcomes": data.mock_stats.get("outcomes", {}),
            "errors_by_code": data.mock_stats.get("errors_by_code", {}),
            "fast_lane": data.mock_stats.get("fast_lane"),
        },
        "states": analysis.state_counts(rows) if rows is not None else None,
        "chaos": {"kills": len(data.kills), "kill_times_s": [round(k - t0, 3) for k in data.kills]},
        "series": series,
        "notes": data.notes,
    }
    result["throughput"]["receipts_per_s"] = result["receipts"]["applied_per_s"]
    result["postgres"] = _postgres(data, result)
    result["throughput"]["per_number"] = _per_number(data.accepted, t0)
    return result


def _per_number(accepted: AcceptedLog, t0: float) -> dict[str, dict[str, Any]]:
    """Each sending number's own rate, from the mock's log (`--numbers` above 1)."""
    times: dict[str, list[float]] = {}
    for number, at in zip(accepted.phone_number_id, accepted.accepted_at, strict=True):
        times.setdefault(number, []).append(at)
    if len(times) < 2:
        return {}
    out = {}
    for number, number_times in sorted(times.items()):
        figures = analysis.throughput(number_times, t0)
        out[number] = {
            "accepted": figures["count"],
            "sends_per_s": figures["per_s"],
            "sends_per_s_sustained": figures["sustained_per_s"],
            "slowest_full_second": figures.get("min_full_second"),
        }
    return out


def _receipts(
    data: RunData, t0: float, length: int, series: dict[str, Any], send_times: list[float]
) -> dict[str, Any]:
    figures = data.receipts
    if figures is None:
        return {"enabled": False, "applied_per_s": None}
    series["receipts_received"] = analysis.per_second(figures.received_at, t0, length)
    series["receipts_applied"] = analysis.per_second(figures.processed_at, t0, length)
    applied = analysis.throughput(figures.processed_at, t0)
    last_send = max(send_times) if send_times else None
    last_applied = max(figures.processed_at) if figures.processed_at else None
    return {
        "enabled": True,
        "stored": sum(figures.by_state.values()),
        "by_state": figures.by_state,
        "applied_per_s": applied["per_s"],
        "drain_after_last_send_s": round(last_applied - last_send, 3)
        if last_applied is not None and last_send is not None
        else None,
        "mock": figures.mock,
    }


def _postgres(data: RunData, result: dict[str, Any]) -> dict[str, Any] | None:
    """WAL bytes and statement times of the run, per stored receipt when receipts were on (the
    server's CPU per receipt, all of it, is `cpu_us_per_receipt`; what receipts add over a
    receipts-off run is in `ratios`)."""
    stats = data.postgres
    if stats is None:
        return None
    stored = result["receipts"].get("stored") or 0
    cpu = (result["resources"].get("postgres") or {}).get("cpu_s_during_run")
    out: dict[str, Any] = {"wal_bytes": stats["wal_bytes"], "statements": stats["statements"]}
    if stored:
        out["wal_bytes_per_receipt"] = round(stats["wal_bytes"] / stored, 1)
        out["cpu_us_per_receipt"] = round(cpu * 1e6 / stored, 2) if cpu is not None else None
        out["receipts"] = pgstats.per_receipt(stats, stored)
    return out


def _resources(data: RunData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, group in data.sampler.groups.items():
        out[name] = group.summary(data.t0, data.t_done)
    out["machine"] = data.sampler.machine_summary(data.t0, data.t_done)
    return out


def _invariants(
    data: RunData, accepted: list[analysis.Accepted], times: list[float]
) -> dict[str, Any]:
    rows = data.rows
    recorded = dict(zip(rows.ids, rows.wamid, strict=True)) if rows is not None else {}
    duplicate_examples: list[dict[str, Any]] = []
    dup = analysis.duplicates(
        accepted,
        recorded,
        data.kills,
        rows.attempt_knowledge if rows is not None else None,
        examples=duplicate_examples,
        t0=data.t0,
    )
    if rows is None:  # no database (the floor): a copy is explained by nothing
        dup["explained_by_unknown_outcome"] = 0
        dup["unexplained"] = dup["duplicated_contacts"]
    errors = data.mock_stats.get("errors_by_code", {})
    throttled = int(errors.get(THROTTLE_CODE, 0))
    first = min(times) if times else None
    if data.throttled_at is not None:
        after_first = analysis.count_after(data.throttled_at, None if first is None else first + 1)
        how = "sender logs (send_failed code 130429)"
    else:
        after_first = _throttled_after(data.throttle_series, first)
        how = "mock counter, polled every 0.5 s"
    out: dict[str, Any] = {
        **dup,
        "non_final": analysis.non_final(rows) if rows is not None else None,
        "http_429": throttled,
        "http_429_after_first_s": after_first,
        "http_429_timing_from": how,
    }
    if rows is not None:
        examples: list[dict[str, Any]] = []
        out.update(
            analysis.result_consistency(accepted, rows, data.kills, t0=data.t0, examples=examples)
        )
        out["lost_examples"] = examples
        out["duplicate_examples"] = duplicate_examples
        out["duplicates_explained_by"] = (
            "attempt history" if rows.attempt_knowledge is not None else "heuristic"
        )
    else:
        out["not_accepted"] = max(0, data.contacts - len({a.contact_id for a in accepted}))
    if data.receipts is not None:
        out["receipts_pending"] = data.receipts.by_state.get("pending", 0)
        out["receipts_dropped_by_mock"] = data.receipts.mock.get("dropped", 0)
    if data.opt_outs is not None:
        out["opt_outs"] = data.opt_outs
    opted = data.opt_outs or {}
    out["ok"] = bool(
        not opted.get("not_suppressed")
        and not opted.get("sent_after_opt_out")
        and data.completed
        and out["unexplained"] == 0
        and out["same_attempt"] == 0
        and not out.get("non_final")
        and not out.get("accepted_not_recorded")
        and not out.get("recorded_not_accepted")
        and not out.get("not_accepted")
        and not out.get("receipts_pending")
    )
    return out


def _throttled_after(series: list[tuple[float, int]], first: float | None) -> int:
    if not series or first is None:
        return 0
    before = 0
    for t, count in series:
        if t <= first + 1.0:
            before = count
    return series[-1][1] - before


def summarise_rounds(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The report's `runs`, `ratios` and `ok` from one or more rounds of the same systems.

    With several rounds each ratio is taken within its round (the systems ran back to back)
    and the median over rounds is reported; `runs` is the round whose first ratio is that
    median, so the table shows a representative round; every round is kept under `rounds`.
    """
    per_round = [ratios(runs) for runs in rounds]
    ok = all(run["invariants"]["ok"] for runs in rounds for run in runs.values())
    if len(rounds) == 1:
        return {"runs": rounds[0], "ratios": per_round[0], "ok": ok}
    median: dict[str, Any] = {}
    for name in per_round[0]:
        median[name] = {
            key: _median([r[name][key] for r in per_round if r[name].get(key) is not None])
            for key in per_round[0][name]
        }
    representative = 0
    if median:
        first = next(iter(median))
        target = median[first]["sends_per_s"]
        values = [r[first]["sends_per_s"] for r in per_round]
        if target is not None:
            representative = min(
                range(len(values)),
                key=lambda i: abs(v - target) if (v := values[i]) is not None else math.inf,
            )
    return {
        "runs": rounds[representative],
        "ratios": median,
        "ratios_by_round": per_round,
        "rounds": rounds,
        "ok": ok,
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round((ordered[middle - 1] + ordered[middle]) / 2, 3)


def ratios(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """wa-sender's throughput as a multiple of each other system measured in the same run."""
    ours = runs.get("wa-sender")
    if ours is None:
        return {}
    out: dict[str, Any] = {}
    for name, other in runs.items():
        if name == "wa-sender":
            continue
        entry: dict[str, float | None] = {}
        for key in ("sends_per_s", "sends_per_s_end_to_end"):
            a, b = ours["throughput"].get(key), other["throughput"].get(key)
            entry[key] = round(a / b, 3) if a and b else None
        if name == "receipts-off":
            entry.update(receipt_costs(ours, other))
        out[name] = entry
    return out


def receipt_costs(on: dict[str, Any], off: dict[str, Any]) -> dict[str, float | None]:
    """What receipts cost, from a receipts-on and a receipts-off run of the same contacts:
    CPU of PostgreSQL, the daemon and the mock (µs) and WAL bytes, per stored receipt."""
    stored = (on.get("receipts") or {}).get("stored") or 0
    out: dict[str, float | None] = {}
    for group in ("postgres", "sender", "mock"):
        a: float | None = (on["resources"].get(group) or {}).get("cpu_s_during_run")
        b: float | None = (off["resources"].get(group) or {}).get("cpu_s_during_run")
        out[f"{group}_cpu_us_per_receipt"] = (
            round((a - b) * 1e6 / stored, 2) if stored and a is not None and b is not None else None
        )
    wal_on: Any = (on.get("postgres") or {}).get("wal_bytes")
    wal_off: Any = (off.get("postgres") or {}).get("wal_bytes")
    out["wal_bytes_per_receipt"] = (
        round((wal_on - wal_off) / stored, 1)
        if stored and wal_on is not None and wal_off is not None
        else None
    )
    return out
