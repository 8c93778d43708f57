"""The load test with receipts, replies at 5 % and opt-outs at 1 % (the short version of the
50,000-contact run in the notes): every phone that said STOP is suppressed, none got a
message after its opt-out was stored, every reply stored once and matched to the campaign
message it answers. Separate processes (mock, daemon), real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from daemon.loadtest.report import render
from tests.test_loadtest import _run, on_test_server  # noqa: F401  (the fixture)


def test_replies_and_opt_outs_under_load_hold_the_opt_out_invariants(
    on_test_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    code, report = _run(
        [
            "--contacts",
            "2000",
            "--receipts",
            "--reply-rate",
            "0.05",
            "--optout-rate",
            "0.01",
            "--seed",
            "7",
        ],
        tmp_path,
    )
    run = report["runs"]["wa-sender"]
    assert code == 0, render(report)
    opted = run["invariants"]["opt_outs"]
    assert opted["mock_opt_outs"] >= 5  # about 20 of 2,000
    assert opted["not_suppressed"] == 0
    assert opted["suppressed"] == opted["mock_opt_outs"]
    assert opted["sent_after_opt_out"] == 0
    assert 50 <= opted["inbound"] <= 200  # about 100 replies, each stored once
    assert opted["inbound_matched"] == opted["inbound"]
    assert run["invariants"]["receipts_pending"] == 0
