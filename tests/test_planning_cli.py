"""Planning on the command line (issue 19): start --at, --window, --window-zone, --finish-by,
update; scheduled campaigns in list and status; bad input is one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.core.windows import is_open, parse_window
from tests.helpers.data import write_csv
from tests.test_cli import one_line_error, wa

CREATE = (
    "campaign",
    "create",
    "--name",
    "Plan",
    "--template",
    "spring_sale",
    "--language",
    "en_US",
    "--param",
    "first_name",
    "--phone-number-id",
    "1234",
)


def test_scheduled_campaign_in_list_and_status_then_paused_resumed_and_canceled(
    db_dsn: str, tmp_path: Path
) -> None:
    created = wa(db_dsn, *CREATE)
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    rows = [("+420602123456", "Jana"), ("+18005550199", "Joe")]
    assert (
        wa(db_dsn, "contacts", "import", cid, str(write_csv(tmp_path / "c.csv", rows))).returncode
        == 0
    )
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    started = wa(
        db_dsn,
        "campaign",
        "start",
        cid,
        "--at",
        f"{at:%Y-%m-%dT%H:%M:%S}",
        env={"WA_SENDER_PLANNING_TIME_ZONE": "UTC"},
    )
    assert started.returncode == 0, started.stderr
    assert (
        started.stdout.strip()
        == f"campaign {cid} is scheduled: starts at {at:%Y-%m-%d %H:%M:%S} UTC"
    )
    listed = wa(db_dsn, "campaign", "list").stdout
    assert "scheduled" in listed and f"starts {at:%Y-%m-%d %H:%M:%S} UTC" in listed
    status = wa(db_dsn, "campaign", "status", cid)
    assert f"Starts at: {at:%Y-%m-%d %H:%M:%S} UTC" in status.stdout
    document = json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)
    assert document["state"] == "scheduled"
    assert datetime.fromisoformat(document["start_at"]) == at
    # With an offset the configured zone does not matter.
    offset = f"{at.astimezone(UTC) + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}+01:00"
    moved = wa(db_dsn, "campaign", "start", cid, "--at", offset, "--json")
    assert json.loads(moved.stdout)["start_at"] == at.isoformat()

    paused = wa(db_dsn, "campaign", "pause", cid)
    assert paused.returncode == 0 and f"campaign {cid} is paused" in paused.stdout
    resumed = wa(db_dsn, "campaign", "resume", cid)
    assert resumed.stdout.startswith(f"campaign {cid} is scheduled"), resumed.stdout
    canceled = wa(db_dsn, "campaign", "cancel", cid)
    assert canceled.returncode == 0 and "2 contacts canceled" in canceled.stdout, canceled.stdout


def test_start_at_in_the_past_or_unreadable_is_one_line(db_dsn: str) -> None:
    cid = wa(db_dsn, *CREATE).stdout.strip()
    one_line_error(wa(db_dsn, "campaign", "start", cid, "--at", "2020-01-01T09:00"), "in the past")
    one_line_error(wa(db_dsn, "campaign", "start", cid, "--at", "tomorrow"), "ISO 8601")
    assert json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)["state"] == "draft"


def test_window_and_finish_by_set_at_create_shown_and_updated(db_dsn: str, tmp_path: Path) -> None:
    finish = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    created = wa(
        db_dsn,
        *CREATE,
        "--window",
        "mon-fri 9:00-20:00, Sat 10:00-14:00",
        "--window-zone",
        "America/New_York",
        "--finish-by",
        finish.isoformat(),
    )
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    rows = [("+420602123456", "Jana"), ("+18005550199", "Joe"), ("+16505551234", "Ann")]
    assert (
        wa(db_dsn, "contacts", "import", cid, str(write_csv(tmp_path / "c.csv", rows))).returncode
        == 0
    )
    status = wa(db_dsn, "campaign", "status", cid).stdout
    assert (
        "Window: Mon-Fri 09:00-20:00, Sat 10:00-14:00 (recipient's local time, else America/New_York)"
        in status
    )
    assert f"Finish by: {finish:%Y-%m-%d %H:%M:%S} UTC" in status
    # Imported into a windowed campaign: each contact's window is computed by the import, so
    # the contacts waiting are those outside their own window now (Prague, New York fallback
    # for a toll-free number, Los Angeles).
    window = parse_window("mon-fri 9:00-20:00, Sat 10:00-14:00")
    now = datetime.now(UTC)
    zones = ("Europe/Prague", "America/New_York", "America/Los_Angeles")
    outside = sum(not is_open(window, now, ZoneInfo(z)) for z in zones)
    assert f"Waiting for their window: {outside}" in status
    updated = wa(
        db_dsn, "campaign", "update", cid, "--window", "Daily 00:00-24:00", "--finish-by", "none"
    )
    assert updated.returncode == 0, updated.stderr
    assert "Window: Daily 00:00-24:00" in updated.stdout
    document = json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)
    assert document["send_window"] == "Daily 00:00-24:00"
    assert document["finish_by"] is None
    assert document["window_waiting"]["contacts"] == 0
    cleared = wa(db_dsn, "campaign", "update", cid, "--window", "none", "--json")
    assert json.loads(cleared.stdout)["send_window"] is None
    assert (
        json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)["window_waiting"] is None
    )


def test_bad_planning_input_is_one_line(db_dsn: str) -> None:
    one_line_error(wa(db_dsn, *CREATE, "--window", "Mon-Fri 9-17"), "HH:MM-HH:MM")
    one_line_error(wa(db_dsn, *CREATE, "--window-zone", "Mars/Olympus"), "not a time zone")
    one_line_error(wa(db_dsn, *CREATE, "--finish-by", "2020-01-01T00:00Z"), "in the past")
    cid = wa(db_dsn, *CREATE).stdout.strip()
    one_line_error(wa(db_dsn, "campaign", "update", cid), "nothing to update")
    one_line_error(
        wa(db_dsn, "campaign", "start", cid, env={"WA_SENDER_PLANNING_TIME_ZONE": "Nowhere/Land"}),
        "planning.time_zone",
    )
