"""The load-test harness: its pure figures, and short real runs through the CLI (the daemon,
the floor and a chaos run as separate processes against the mock, on the test server)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from daemon.cli import main
from daemon.loadtest.analysis import (
    Accepted,
    ContactRows,
    duplicates,
    per_second,
    result_consistency,
    throughput,
)
from daemon.loadtest.harness import round_order
from daemon.loadtest.latency import Histogram, SecondlyRecorder, read_secondly
from daemon.loadtest.options import LoadtestError, LoadtestOptions
from daemon.loadtest.report import render
from daemon.loadtest.results import summarise_rounds
from daemon.loadtest.seeding import split_evenly

RUN_KEYS = {
    "system",
    "contacts",
    "completed",
    "duration_s",
    "throughput",
    "latency_ms",
    "receipts",
    "resources",
    "invariants",
    "mock",
    "states",
    "chaos",
    "series",
}
THROUGHPUT_KEYS = {
    "sends_per_s",
    "sends_per_s_sustained",
    "sends_per_s_end_to_end",
    "receipts_per_s",
    "accepted",
}
INVARIANT_KEYS = {
    "duplicated_contacts",
    "unexplained",
    "same_attempt",
    "non_final",
    "accepted_not_recorded",
    "recorded_not_accepted",
    "http_429",
    "http_429_after_first_s",
    "ok",
}


# -- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([10.0] * 100, 50, 10.0),
        ([1.0] * 50 + [100.0] * 50, 50, 1.0),
        ([1.0] * 50 + [100.0] * 50, 90, 100.0),
        ([float(v) for v in range(1, 1001)], 99, 990.0),
        ([0.0, 0.0], 50, 0.001),
    ],
)
def test_histogram_percentiles_are_within_two_percent(
    values: list[float], p: float, expected: float
) -> None:
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    got = histogram.percentile(p)
    assert got is not None
    assert got == pytest.approx(expected, rel=0.02)


def test_secondly_recorder_writes_one_line_per_second_and_merges_back() -> None:
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    recorder = SecondlyRecorder(Sink())  # type: ignore[arg-type]
    for t, ms in [(100.1, 5.0), (100.9, 7.0), (101.2, 9.0), (103.0, 1.0)]:
        recorder.observe(ms, t)
    recorder.close()
    merged = read_secondly([*"".join(lines).splitlines(), '{"t": 104, "h": {'])  # torn line
    assert sorted(merged) == [100, 101, 103]
    assert merged[100].count == 2
    assert recorder.total.count == 4


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(10, 1, [10]), (10, 4, [3, 3, 2, 2]), (3, 3, [1, 1, 1]), (0, 2, [0, 0])],
)
def test_contacts_split_evenly_over_numbers(total: int, parts: int, expected: list[int]) -> None:
    assert split_evenly(total, parts) == expected


def test_per_second_counts_from_the_start() -> None:
    assert per_second([10.0, 10.5, 11.2, 13.9], 10.0) == [2, 1, 0, 1]
    assert per_second([10.2], 10.0, length=3) == [1, 0, 0]


def test_sustained_throughput_leaves_out_the_first_and_last_second() -> None:
    # 100 sends in the first 0.1 s (a burst), then 10 per second for 9 s.
    times = [0.001 * i for i in range(100)] + [1.0 + 0.1 * i for i in range(90)]
    figures = throughput(times, 0.0)
    assert figures["count"] == 190
    assert figures["sustained_per_s"] == pytest.approx(10.0, rel=0.1)
    assert figures["per_s"] > figures["sustained_per_s"]


def _accepted(contact: int, attempt: int, wamid: str, at: float) -> Accepted:
    return Accepted(contact, attempt, wamid, at)


def test_duplicates_are_explained_only_by_an_unknown_outcome() -> None:
    accepted = [
        _accepted(1, 1, "w1", 10.0),  # sent once
        _accepted(2, 1, "w2a", 10.0),  # first result lost (killed), resent: explained
        _accepted(2, 2, "w2b", 20.0),
        _accepted(3, 1, "w3a", 10.0),  # first result recorded, resent anyway: a bug
        _accepted(3, 2, "w3b", 20.0),
        _accepted(4, 1, "w4a", 29.0),  # recorded, but accepted just before a SIGKILL
        _accepted(4, 2, "w4b", 40.0),
        _accepted(5, 1, "w5a", 10.0),  # the same attempt twice: two senders, one claim
        _accepted(5, 1, "w5b", 10.5),
    ]
    recorded = {1: "w1", 2: "w2b", 3: "w3a", 4: "w4a", 5: "w5b"}
    figures = duplicates(accepted, recorded, kills=[30.0])
    assert figures == {
        "duplicated_contacts": 4,
        "extra_messages": 4,
        "explained_by_unknown_outcome": 2,
        "unexplained": 2,
        "same_attempt": 1,
    }


def test_with_the_attempt_history_a_duplicate_is_explained_by_the_daemon_not_knowing() -> None:
    accepted = [
        _accepted(2, 1, "w2a", 10.0),  # declared unknown (lease recovery), resent: explained
        _accepted(2, 2, "w2b", 45.0),
        _accepted(3, 1, "w3a", 10.0),  # recorded as sent, resent anyway: a bug
        _accepted(3, 2, "w3b", 20.0),
        _accepted(4, 1, "w4a", 10.0),  # nothing recorded for attempt 1 (killed): explained
        _accepted(4, 2, "w4b", 45.0),
        _accepted(6, 1, "w6a", 10.0),  # unknown, resent after the grace; then a late receipt
        _accepted(6, 2, "w6b", 45.0),  # recorded w6a: the heuristic called this a bug
    ]
    recorded = {2: "w2b", 3: "w3a", 4: "w4b", 6: "w6a"}
    knowledge = {
        (2, 1): (True, False),
        (2, 2): (False, True),
        (3, 1): (False, True),
        (3, 2): (False, True),
        (4, 2): (False, True),
        (6, 1): (True, False),
    }
    examples: list[dict[str, object]] = []
    figures = duplicates(accepted, recorded, [], knowledge, examples=examples, t0=5.0)
    assert figures["duplicated_contacts"] == 4
    assert figures["explained_by_unknown_outcome"] == 3
    assert figures["unexplained"] == 1
    assert [e["contact_id"] for e in examples] == [3]
    assert examples[0]["copies"] == [
        {"attempt": 1, "at_s": 5.0, "wamid": "w3a"},
        {"attempt": 2, "at_s": 15.0, "wamid": "w3b"},
    ]
    # Without the history the late receipt's case reads as unexplained.
    assert duplicates(accepted, recorded, [])["unexplained"] == 2


def test_result_consistency_finds_lost_and_phantom_results() -> None:
    accepted = [_accepted(1, 1, "w1", 1.0), _accepted(2, 1, "w2", 1.0)]
    rows = ContactRows(
        ids=[1, 2, 3],
        states=["sent", "retry_scheduled", "delivered"],
        attempts=[1, 1, 1],
        claimed_at=[0.5, 0.5, 0.5],
        sent_at=[1.0, None, 1.0],
        wamid=["w1", None, "w-never-accepted"],
    )
    assert result_consistency(accepted, rows) == {
        "accepted_not_recorded": 1,
        "accepted_outcome_unknown": 0,
        "recorded_not_accepted": 1,
    }


def test_a_result_that_died_with_its_daemon_is_an_unknown_outcome_not_a_lost_one() -> None:
    accepted = [_accepted(1, 5, "w1", 10.0), _accepted(2, 1, "w2", 10.0)]
    rows = ContactRows(
        ids=[1, 2],
        states=["error", "error"],
        attempts=[5, 1],
        claimed_at=[9.9, 9.9],
        sent_at=[None, None],
        wamid=[None, None],
    )
    assert result_consistency(accepted, rows, kills=[10.3]) == {
        "accepted_not_recorded": 0,
        "accepted_outcome_unknown": 2,
        "recorded_not_accepted": 0,
    }
    assert result_consistency(accepted, rows, kills=[30.0])["accepted_not_recorded"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contacts": 0}, "--contacts"),
        ({"error_rate": 1.5}, "--error-rate"),
        ({"numbers": 5, "contacts": 3}, "--numbers"),
        ({"kill_every_s": 0}, "--kill-every"),
        ({"systems": ("wa-sender", "celery")}, "unknown systems"),
        ({"rounds": 0}, "--rounds"),
    ],
)
def test_bad_options_are_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadtestError, match=message):
        LoadtestOptions(**kwargs)


def _fake_run(sends_per_s: float, ok: bool = True) -> dict[str, Any]:
    return {
        "throughput": {"sends_per_s": sends_per_s, "sends_per_s_end_to_end": sends_per_s / 2},
        "invariants": {"ok": ok},
    }


def test_rounds_report_the_median_ratio_and_show_the_median_round() -> None:
    rounds = [
        {"wa-sender": _fake_run(800), "floor": _fake_run(1000)},  # 0.8
        {"wa-sender": _fake_run(500), "floor": _fake_run(1000)},  # 0.5
        {"wa-sender": _fake_run(700), "floor": _fake_run(1000)},  # 0.7
    ]
    summary = summarise_rounds(rounds)
    assert summary["ratios"] == {"floor": {"sends_per_s": 0.7, "sends_per_s_end_to_end": 0.7}}
    assert summary["runs"] is rounds[2]
    assert [r["floor"]["sends_per_s"] for r in summary["ratios_by_round"]] == [0.8, 0.5, 0.7]
    assert summary["ok"] is True
    rounds[0]["floor"]["invariants"]["ok"] = False
    assert summarise_rounds(rounds)["ok"] is False
    one = summarise_rounds(rounds[1:2])
    assert one["runs"] is rounds[1] and "rounds" not in one
    assert one["ratios"]["floor"]["sends_per_s"] == 0.5


@pytest.mark.parametrize(
    ("rate", "latency_ms", "numbers", "concurrency", "connections"),
    [(0, 0, 1, 64, 100), (1000, 200, 1, 300, 300), (500, 200, 4, 600, 600), (80, 50, 1, 64, 100)],
)
def test_concurrency_covers_rate_times_latency(
    rate: float, latency_ms: float, numbers: int, concurrency: int, connections: int
) -> None:
    options = LoadtestOptions(rate=rate, latency_ms=latency_ms, numbers=numbers)
    assert options.effective_concurrency == concurrency
    assert options.effective_max_connections == connections


# -- real runs ---------------------------------------------------------------------------


@pytest.fixture
def on_test_server(pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Load tests create (and drop) their own database on the test server."""
    monkeypatch.setenv("DATABASE_URL", pg_server_dsn)
    return pg_server_dsn


def _run(args: list[str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    report_path = tmp_path / "report.json"
    logs = tmp_path / "logs"
    code = main(["loadtest", "--quiet", "--json", str(report_path), "--log-dir", str(logs), *args])
    return code, json.loads(report_path.read_text())


def _assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data[-8:-4] == b"IEND"


def test_small_loadtest_reports_every_figure_and_holds_the_invariants(
    on_test_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "run.png"
    code, report = _run(["--contacts", "2000", "--plot", str(plot)], tmp_path)
    assert code == 0
    assert report["ok"] is True
    assert set(report) >= {"scenario", "machine", "runs", "ratios"}
    run = report["runs"]["wa-sender"]
    assert set(run) >= RUN_KEYS
    assert set(run["throughput"]) >= THROUGHPUT_KEYS
    assert set(run["invariants"]) >= INVARIANT_KEYS
    assert run["completed"] is True
    assert run["throughput"]["accepted"] == 2000
    assert run["throughput"]["sends_per_s"] > 0
    assert run["states"] == {"sent": 2000}
    invariants = run["invariants"]
    assert invariants["duplicated_contacts"] == 0
    assert invariants["non_final"] == 0
    assert invariants["accepted_not_recorded"] == 0
    assert invariants["recorded_not_accepted"] == 0
    for latency in ("send", "claim_to_send"):
        summary = run["latency_ms"][latency]
        assert summary["count"] >= 2000
        assert 0 < summary["p50"] <= summary["p90"] <= summary["p99"]
    sender = run["resources"]["sender"]
    assert sender["cpu_s"] > 0 and sender["peak_rss_mb"] > 10
    assert 0.0 <= sender["runqueue_wait_s_during_run"] <= sender["runqueue_wait_s"]
    assert run["resources"]["mock"]["cpu_s"] > 0
    assert run["resources"]["mock"]["runqueue_wait_s_during_run"] >= 0.0
    assert sum(run["series"]["sends_mock"]) == 2000
    assert sum(run["series"]["sends_db"]) == 2000
    assert run["mock"]["fast_lane"]["served"] == 2000  # every send; the stats polls went to aiohttp
    _assert_valid_png(plot)
    out = capsys.readouterr().out
    assert "sends/s, mock side" in out and "OK" in out
    assert "sender run-queue wait s" in out


def test_floor_posts_every_body_without_a_database(tmp_path: Path) -> None:
    code, report = _run(["--floor", "--contacts", "2000", "--numbers", "2"], tmp_path)
    assert code == 0
    assert list(report["runs"]) == ["floor"]
    floor = report["runs"]["floor"]
    assert floor["throughput"]["accepted"] == 2000
    per_number = floor["throughput"]["per_number"]
    assert len(per_number) == 2
    assert sum(n["accepted"] for n in per_number.values()) == 2000
    assert all(n["sends_per_s"] > 0 for n in per_number.values())
    assert floor["invariants"]["duplicated_contacts"] == 0
    assert floor["invariants"]["not_accepted"] == 0
    assert floor["latency_ms"]["send"]["count"] == 2000
    assert "postgres" not in floor["resources"]
    assert report["ratios"] == {}
    assert floor["mock"]["accepted"] == 2000
    assert floor["mock"]["fast_lane"]["served"] == 2000


def test_the_mock_can_serve_every_send_through_aiohttp_instead(tmp_path: Path) -> None:
    code, report = _run(["--floor", "--contacts", "500", "--no-mock-fast-lane"], tmp_path)
    floor = report["runs"]["floor"]
    assert code == 0 and floor["throughput"]["accepted"] == 500
    assert floor["mock"]["fast_lane"] is None
    assert report["scenario"]["mock_fast_lane"] is False


def test_every_other_round_runs_the_systems_in_reverse_order() -> None:
    systems = ["wa-sender", "floor", "pgqueuer"]
    assert round_order(systems, 1) == systems
    assert round_order(systems, 2) == ["pgqueuer", "floor", "wa-sender"]
    assert round_order(systems, 3) == systems


def test_rounds_interleave_the_systems_and_take_the_median_ratio(
    on_test_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _run(["--contacts", "1000", "--compare", "floor", "--rounds", "2"], tmp_path)
    assert code == 0
    assert len(report["rounds"]) == 2
    each = [r["floor"]["sends_per_s"] for r in report["ratios_by_round"]]
    assert all(ratio > 0 for ratio in each)
    assert report["ratios"]["floor"]["sends_per_s"] == pytest.approx(sum(each) / 2, abs=0.001)
    for runs in report["rounds"]:
        assert runs["wa-sender"]["states"] == {"sent": 1000}
        assert runs["floor"]["throughput"]["accepted"] == 1000
    assert "median of 2 rounds" in capsys.readouterr().out


def _loadtest_databases(dsn: str) -> set[str]:
    async def names() -> set[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'loadtest_%'"
            )
            return {r[0] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(names())


def _drop_databases(dsn: str, names: set[str]) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def test_a_harness_killed_outright_takes_its_processes_with_it(
    on_test_server: str, tmp_path: Path
) -> None:
    before = _loadtest_databases(on_test_server)
    harness = subprocess.Popen(
        [sys.executable, "-m", "daemon", "loadtest", "--contacts", "300000", "--quiet"],
        env={**os.environ, "DATABASE_URL": on_test_server},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:  # the mock and a daemon are up: sending
            children = psutil.Process(harness.pid).children()
            if any("daemon.loadtest.probe" in " ".join(c.cmdline()) for c in children):
                break
            time.sleep(0.2)
        assert len(children) >= 2, [c.cmdline() for c in children]
        harness.send_signal(signal.SIGKILL)
        harness.wait(10)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if harness.poll() is None:
            harness.kill()
        _drop_databases(on_test_server, _loadtest_databases(on_test_server) - before)


def test_chaos_run_ends_with_every_contact_final_and_no_lost_result(
    on_test_server: str, tmp_path: Path
) -> None:
    code, report = _run(
        [
            "--contacts",
            "3000",
            "--daemons",
            "2",
            "--rate",
            "1500",
            "--kill-every",
            "1",
            "--error-rate",
            "0.05",
            # Two daemons killed in turn: one has always been up a while. Short leases and
            # small batches: a killed daemon strands few contacts, briefly. Every kill costs
            # the contacts it held an attempt (their outcome is unknown).
            "--set",
            "recovery.lease_s=2",
            "--set",
            "recovery.grace_s=0.5",
            "--set",
            "sender.batch_size=100",
            "--set",
            "sender.max_attempts=10",
            "--set",
            "sender.retry_initial_s=0.2",
            "--set",
            "sender.retry_max_s=1",
            "--timeout",
            "60",
        ],
        tmp_path,
    )
    run = report["runs"]["wa-sender"]
    invariants = run["invariants"]
    assert run["chaos"]["kills"] >= 1
    assert run["completed"] is True
    assert invariants["non_final"] == 0
    assert invariants["accepted_not_recorded"] == 0
    assert invariants["recorded_not_accepted"] == 0
    assert invariants["same_attempt"] == 0
    assert invariants["unexplained"] == 0
    assert run["mock"]["outcomes"].get("transient", 0) > 0
    assert sum(run["states"].values()) == 3000
    assert code == 0, render(report)


def test_receipts_run_applies_every_receipt_to_its_contact(
    on_test_server: str, tmp_path: Path
) -> None:
    code, report = _run(["--contacts", "2000", "--receipts", "--daemons", "2"], tmp_path)
    run = report["runs"]["wa-sender"]
    receipts = run["receipts"]
    assert code == 0, render(report)
    assert receipts["enabled"] is True
    assert receipts["stored"] >= 2000  # at least a `sent` status per message
    assert receipts["by_state"].get("pending", 0) == 0
    assert receipts["mock"]["dropped"] == 0 and receipts["mock"]["pending"] == 0
    assert receipts["drain_after_last_send_s"] is not None
    assert run["throughput"]["receipts_per_s"] > 0
    assert run["invariants"]["receipts_pending"] == 0
    assert set(run["states"]) <= {"sent", "delivered", "read"}
    assert run["states"].get("delivered", 0) + run["states"].get("read", 0) > 1000
    assert sum(run["series"]["receipts_applied"]) == receipts["stored"]


def test_compare_receipts_off_runs_both_systems_and_reports_what_a_receipt_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The harness's own embedded cluster: its PostgreSQL CPU is sampled and it preloads
    # pg_stat_statements (a DATABASE_URL server need not give either).
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, report = _run(["--contacts", "2000", "--receipts", "--compare", "receipts-off"], tmp_path)
    assert code == 0, render(report)
    assert report["ok"] is True
    assert list(report["runs"]) == ["wa-sender", "receipts-off"]
    on, off = report["runs"]["wa-sender"], report["runs"]["receipts-off"]
    for run in (on, off):
        assert run["completed"] is True
        assert run["throughput"]["accepted"] == 2000
        assert run["invariants"]["duplicated_contacts"] == 0
        assert run["invariants"]["non_final"] == 0
        assert run["invariants"]["accepted_not_recorded"] == 0
    assert on["receipts"]["enabled"] is True and on["receipts"]["stored"] >= 2000
    assert on["invariants"]["receipts_pending"] == 0
    assert on["states"].get("delivered", 0) + on["states"].get("read", 0) > 1000
    assert off["states"] == {"sent": 2000}  # no status webhooks at all
    ratio = report["ratios"]["receipts-off"]
    assert ratio["sends_per_s"] > 0
    for key in ("postgres", "sender", "mock"):
        assert ratio[f"{key}_cpu_us_per_receipt"] is not None
    assert ratio["wal_bytes_per_receipt"] is not None and ratio["wal_bytes_per_receipt"] > 0
    postgres = on["postgres"]
    assert postgres["wal_bytes"] > off["postgres"]["wal_bytes"]
    assert postgres["cpu_us_per_receipt"] > 0 and postgres["wal_bytes_per_receipt"] > 0
    by_statement = postgres["receipts"]["by_statement"]  # pg_stat_statements, per receipt
    assert postgres["receipts"]["statement_us_per_receipt"] > 0
    for name in ("store_receipt_bodies", "reconcile_receipts"):  # the group commit, the batch
        assert by_statement[name]["calls"] > 0 and by_statement[name]["us_per_receipt"] > 0
    out = capsys.readouterr().out
    assert "wa-sender / receipts-off:" in out and "per stored receipt" in out


@pytest.mark.slow
def test_compare_runs_the_floor_and_pgqueuer_on_the_same_data_and_prints_ratios(
    on_test_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pgqueuer")
    code, report = _run(["--contacts", "3000", "--compare", "floor,pgqueuer"], tmp_path)
    assert code == 0, render(report)
    assert list(report["runs"]) == ["wa-sender", "floor", "pgqueuer"]
    pgqueuer = report["runs"]["pgqueuer"]
    assert pgqueuer["states"] == {"sent": 3000}
    assert pgqueuer["invariants"]["duplicated_contacts"] == 0
    assert pgqueuer["notes"]["batch_size"] == 200
    for other in ("floor", "pgqueuer"):
        assert report["ratios"][other]["sends_per_s"] > 0
    assert "wa-sender / pgqueuer:" in capsys.readouterr().out
