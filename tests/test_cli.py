"""The command line as operators use it: real processes, one clear line for every error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.data import write_csv
from tests.helpers.proc import REPO


def wa(
    dsn: str | None, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WA_SENDER_") and k != "DATABASE_URL"
    }
    if dsn:
        environ["DATABASE_URL"] = dsn
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wa-sender: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_campaign_workflow_end_to_end(db_dsn: str, tmp_path: Path) -> None:
    assert wa(db_dsn, "migrate").stdout.strip() == "schema is up to date"
    created = wa(
        db_dsn,
        "campaign",
        "create",
        "--name",
        "Spring",
        "--template",
        "spring_sale",
        "--language",
        "en_US",
        "--param",
        "first_name",
        "--phone-number-id",
        "1234",
    )
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    csv_path = write_csv(
        tmp_path / "c.csv", [("+1 650 555 1234", "Anna"), ("abc", "X"), ("+16505551234", "Dup")]
    )
    imported = json.loads(wa(db_dsn, "contacts", "import", cid, str(csv_path), "--json").stdout)
    assert imported == {
        "campaign_id": int(cid),
        "rows": 3,
        "imported": 1,
        "invalid": 2,
        "reasons": {"invalid_characters": 1, "duplicate_phone": 1},
    }
    status = json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)
    assert {k: status[k] for k in ("id", "name", "state", "total")} == {
        "id": int(cid),
        "name": "Spring",
        "state": "draft",
        "total": 3,
    }
    assert status["counts"]["initial"] == 1 and status["counts"]["invalid_record"] == 2
    assert set(status["counts"]) == {
        "initial",
        "invalid_record",
        "in_progress",
        "retry_scheduled",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "sending_failed",
        "error",
        "canceled_by_admin",
        "removed",
        "successfully_submitted",
    }
    table = wa(db_dsn, "campaign", "status", cid).stdout
    assert "Invalid record" in table and "Canceled by admin" in table and "Progress" in table
    assert wa(db_dsn, "campaign", "start", cid).stdout.strip() == f"campaign {cid} is running"
    one_line_error(wa(db_dsn, "campaign", "start", cid), "cannot start a campaign that is running")
    one_line_error(
        wa(db_dsn, "contacts", "remove", cid, "+16505551234"), "only while it is draft or paused"
    )
    assert wa(db_dsn, "campaign", "cancel", cid).returncode == 0
    status = json.loads(wa(db_dsn, "campaign", "status", cid, "--json").stdout)
    assert status["state"] == "canceled" and status["counts"]["canceled_by_admin"] == 1
    assert "Spring" in wa(db_dsn, "campaign", "list").stdout


def test_bad_input_is_one_line_and_non_zero(db_dsn: str, tmp_path: Path) -> None:
    one_line_error(wa(db_dsn, "campaign", "status", "999"), "campaign 999 does not exist")
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x00\x01\x02")
    cid = wa(
        db_dsn,
        "campaign",
        "create",
        "--name",
        "n",
        "--template",
        "t",
        "--language",
        "en",
        "--phone-number-id",
        "1",
    ).stdout.strip()
    one_line_error(wa(db_dsn, "contacts", "import", cid, str(binary)), "not a CSV file")
    one_line_error(
        wa(db_dsn, "contacts", "import", cid, str(tmp_path / "missing.csv")), "file not found"
    )
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[sender]\nrate_per_secnd = 3\n")
    one_line_error(
        wa(db_dsn, "--config", str(bad_config), "campaign", "list"),
        "unknown key sender.rate_per_secnd",
    )
    secret = tmp_path / "secret.toml"
    secret.write_text('[whatsapp]\naccess_token = "EAAG..."\n')
    result = wa(db_dsn, "--config", str(secret), "campaign", "list")
    one_line_error(result, "is a secret and must not be in a file")
    assert "EAAG" not in result.stderr
    one_line_error(
        wa(db_dsn, "campaign", "list", env={"WA_SENDER_SENDER_RATE_PER_SECOND": "fast"}),
        "sender.rate_per_second must be float",
    )
    one_line_error(wa(db_dsn, "run"), "whatsapp.access_token is not set")
    usage = wa(db_dsn, "campaign", "status", "abc")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_demo_runs_a_campaign_end_to_end_on_an_embedded_database(tmp_path: Path) -> None:
    result = wa(None, "demo", "--contacts", "300", "--rate", "300", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "imported 320, invalid 5" in out
    assert "': finished\n" in out and "Read" in out
    assert "double sends: 0" in out
    closing = re.search(
        r"(\d+) messages for (\d+) contacts \((\d+) resent after a failed status, (\d+) refused"
        r" by the API, (\d+) opted out\), double sends: 0\n",
        out,
    )
    assert closing, out[-500:]
    messages, reached, resent, refused, opted_out = (int(closing[i]) for i in range(1, 6))
    assert messages == reached + resent and reached + refused + opted_out == 320
    # The mock posted a reply and a STOP from a contact still waiting: it was never sent.
    listening = re.search(
        r"Listening: 1 reply, 1 opt-out \(STOP from 447\*+\d\d: (\d) contact stopped before"
        r" its send, 1 on the suppression list; messages to it after the STOP: 0\)\n",
        out,
    )
    assert listening, out[-800:]
    assert int(listening[1]) == opted_out == 1
    assert "Progress [##############################] 100.0% (325/325 final)" in out


@pytest.mark.parametrize(
    "command", [["--help"], ["campaign", "--help"], ["run", "--help"], ["loadtest", "--help"]]
)
def test_help_everywhere(command: list[str]) -> None:
    result = wa(None, *command)
    assert result.returncode == 0 and "usage:" in result.stdout
