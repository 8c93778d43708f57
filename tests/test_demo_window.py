"""`wa-sender demo --window SPEC`: the demo campaign gets the send window; with every
recipient outside theirs, nothing is sent and the demo ends saying how many wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.test_cli import wa


def test_demo_with_a_closed_window_sends_nothing_and_says_who_waits(tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=3)
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[later.weekday()]
    window = f"{day} {later:%H}:00-{later:%H}:01"  # one minute a week, days away everywhere
    result = wa(None, "demo", "--contacts", "100", "--window", window, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert f"send window {window} (recipients' local time)" in out
    assert "contacts wait for their send window (the next opens 20" in out
    assert "0 messages for 0 contacts" in out


def test_demo_with_a_bad_window_is_one_line(tmp_path: Path) -> None:
    result = wa(None, "demo", "--window", "Mon-Fri 9-17", cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wa-sender: error: --window:"), lines
