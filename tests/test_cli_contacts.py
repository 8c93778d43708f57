"""The contacts commands on the command line: import with a default country, a dry run and a
re-import, export to a file, show, suppression by national number, retarget and delete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.helpers.data import write_csv
from tests.test_cli import one_line_error, wa


def _ok(dsn: str, *args: str) -> str:
    result = wa(dsn, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_contacts_in_and_out_on_the_command_line(db_dsn: str, tmp_path: Path) -> None:
    cid = _ok(
        db_dsn, "campaign", "create", "--name", "CZ", "--template", "t", "--language", "cs",
        "--param", "first_name", "--phone-number-id", "1234", "--default-country", "cz",
    ).strip()  # fmt: skip
    path = write_csv(
        tmp_path / "c.csv",
        [("602 123 456", "Řehoř"), ("+421 912 345 678", "=cmd|' /C calc'!A0"), ("123", "X")],
    )
    dry = json.loads(_ok(db_dsn, "contacts", "import", cid, str(path), "--dry-run", "--json"))
    assert dry == {
        "campaign_id": int(cid),
        "rows": 3,
        "imported": 2,
        "invalid": 1,
        "reasons": {"invalid_number": 1},
        "dry_run": True,
    }
    assert "would import 2" in _ok(db_dsn, "contacts", "import", cid, str(path), "--dry-run")
    assert "imported 2, invalid 1" in _ok(db_dsn, "contacts", "import", cid, str(path))
    again = _ok(db_dsn, "contacts", "import", cid, str(path))
    assert "imported 0, invalid 1 (of 3 rows)" in again
    assert "2 rows were already in this campaign" in again

    out = tmp_path / "out.csv"
    _ok(db_dsn, "contacts", "export", cid, "--output", str(out))
    with out.open(encoding="utf-8", newline="") as exported:
        rows = list(csv.DictReader(exported))
    assert [r["phone"] for r in rows] == ["420602123456", "421912345678", "123", "123"]
    assert rows[1]["param.first_name"] == "'=cmd|' /C calc'!A0"
    errors = json.loads(_ok(db_dsn, "contacts", "export", cid, "--state", "invalid_record",
                            "--format", "json"))  # fmt: skip
    assert [e["invalid_reason"] for e in errors] == ["invalid_number", "invalid_number"]

    _ok(db_dsn, "suppression", "add", "602123456", "--default-country", "CZ")
    shown = _ok(db_dsn, "contacts", "show", cid, "602 123 456", "--default-country", "CZ")
    assert "420602123456  Initial" in shown and "number: CZ, Europe/Prague" in shown
    assert "listed since" in shown and "opt-out" in shown

    new = json.loads(_ok(db_dsn, "campaign", "retarget", cid, "--states", "initial", "--json"))
    assert (new["contacts"], new["suppressed"]) == (1, 1)
    assert _ok(db_dsn, "campaign", "delete", str(new["campaign_id"])).strip() == (
        f"deleted campaign {new['campaign_id']}"
    )
    _ok(db_dsn, "campaign", "start", cid)
    one_line_error(wa(db_dsn, "campaign", "delete", cid), "only a draft campaign can be deleted")


def test_bad_country_and_national_number_without_one_are_one_line(db_dsn: str) -> None:
    bad = wa(db_dsn, "suppression", "add", "602123456", "--default-country", "XX")
    assert bad.returncode == 2 and "unknown country code 'XX'" in bad.stderr
    one_line_error(
        wa(db_dsn, "suppression", "add", "602123456"),
        "missing_country_code (add the country code, or --default-country)",
    )
