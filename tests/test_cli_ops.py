"""The command line for operators: --version, help for every option, exit codes in every help,
--json on every command that changes something, input checked before the database, the
campaign id positional everywhere, liveness warnings, `daemons`, escaped tables, enum values
in console logs."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import asyncpg
import pytest

from daemon import version
from daemon.cli.main import EXIT_CODES, build_parser
from daemon.core.outcomes import OutcomeKind
from daemon.core.states import ContactState
from daemon.logs import configure_logging, get_logger
from daemon.ops.render import printable
from tests.helpers.data import write_csv
from tests.test_cli import one_line_error, wa

# Every command that changes something, as its words on the command line.
CHANGING = [
    ["migrate"],
    ["campaign", "create"],
    ["campaign", "start"],
    ["campaign", "pause"],
    ["campaign", "resume"],
    ["campaign", "cancel"],
    ["contacts", "import"],
    ["contacts", "remove"],
    ["campaign", "retarget"],
    ["campaign", "delete"],
    ["suppression", "add"],
    ["suppression", "remove"],
    ["gdpr", "purge"],
    ["gdpr", "forget"],
]


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command line with its words, the top one first."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += parsers(sub, (*path, name))
    return found


ALL_PARSERS = parsers(build_parser())
PARSER_IDS = [" ".join(path) or "wa-sender" for path, _ in ALL_PARSERS]


def test_version() -> None:
    result = wa(None, "--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"wa-sender {version()}")
    assert version() != "unknown"


@pytest.mark.parametrize(("path", "parser"), ALL_PARSERS, ids=PARSER_IDS)
def test_every_option_and_argument_has_help(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{' '.join(path)}: {name}"


@pytest.mark.parametrize(("path", "parser"), ALL_PARSERS, ids=PARSER_IDS)
def test_every_help_ends_with_the_exit_codes(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    assert parser.epilog == EXIT_CODES
    help_text = " ".join(parser.format_help().split())
    for code in ("0 ok", "1 error", "2 usage", "78 configuration", "130 interrupted"):
        assert code in help_text


def test_the_exit_codes_are_in_the_readme_too() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for row in ("| 0 |", "| 1 |", "| 2 |", "| 78 |", "| 130 |"):
        assert row in readme


@pytest.mark.parametrize("path", CHANGING, ids=" ".join)
def test_every_command_that_changes_something_takes_json(path: list[str]) -> None:
    [parser] = [p for words, p in ALL_PARSERS if list(words) == path]
    assert any("--json" in a.option_strings for a in parser._actions)


def _create(dsn: str, *extra: str, name: str = "Spring") -> dict[str, object]:
    result = wa(
        dsn, "campaign", "create", "--name", name, "--template", "spring_sale",
        "--language", "en_US", "--param", "first_name", "--phone-number-id", "1234", "--json",
        *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    created: dict[str, object] = json.loads(result.stdout)
    return created


def _json(dsn: str, *args: str) -> dict[str, object]:
    result = wa(dsn, *args, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_json_everywhere_the_new_state_and_the_counts(db_dsn: str, tmp_path: Path) -> None:
    assert _json(db_dsn, "migrate") == {"applied": [], "up_to_date": True}
    created = _create(db_dsn)
    cid = str(created["id"])
    assert created["state"] == "draft" and created["name"] == "Spring"
    csv_path = write_csv(tmp_path / "c.csv", [("+16505551234", "Anna"), ("+16505551235", "Bo")])
    assert _json(db_dsn, "contacts", "import", cid, str(csv_path))["imported"] == 2
    removing = wa(db_dsn, "contacts", "remove", cid, "+16505551235", "+16505559999", "--json")
    assert removing.returncode == 1  # one phone could not be removed: as without --json
    assert json.loads(removing.stdout) == {
        "campaign_id": int(cid),
        "removed": 1,
        "not_removed": {"16505559999": "not in this campaign"},
    }
    started = _json(db_dsn, "campaign", "start", cid)
    assert started["state"] == "running" and started["changed"] is True
    assert started["counts"]["initial"] == 1 and started["counts"]["removed"] == 1  # type: ignore[index]
    paused = _json(db_dsn, "campaign", "pause", cid)
    assert paused["state"] == "paused" and paused["stop"]["daemons_confirmed"] == 0  # type: ignore[index]
    assert _json(db_dsn, "campaign", "resume", cid)["state"] == "running"
    canceled = _json(db_dsn, "campaign", "cancel", cid)
    assert canceled["state"] == "canceled" and canceled["stop"]["canceled"] == 1  # type: ignore[index]
    assert canceled["counts"]["canceled_by_admin"] == 1  # type: ignore[index]
    added = _json(db_dsn, "suppression", "add", "+16505550000", "+16505550000")
    assert added == {"added": 1, "already_listed": 1}
    assert _json(db_dsn, "suppression", "remove", "+16505550000") == {"removed": 1, "not_listed": 0}
    purged = _json(db_dsn, "gdpr", "purge", "--older-than", "0")
    assert purged["older_than_days"] == 0 and purged["campaigns"] == 1
    forgot = _json(db_dsn, "gdpr", "forget", "+16505551234")
    assert forgot["suppression_added"] is True


def test_resume_of_a_running_campaign_is_a_note_not_an_error(db_dsn: str) -> None:
    cid = str(_create(db_dsn)["id"])
    assert wa(db_dsn, "campaign", "start", cid).returncode == 0
    result = wa(db_dsn, "campaign", "resume", cid)
    assert result.returncode == 0
    assert result.stdout.strip() == f"campaign {cid} is already running: nothing to resume"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "   "], "--name must not be empty"),
        (["--name", "x", "--template", ""], "--template must not be empty"),
        (["--name", "x", "--phone-number-id", "abc"], "a phone number id is digits only"),
        (["--name", "x", "--phone-number-id", "12 34"], "a phone number id is digits only"),
        (["--name", "x", "--param", "a", "--param", "a"], "a --param column is named twice"),
    ],
)
def test_bad_input_is_refused_before_the_database(
    db_dsn: str, args: list[str], fragment: str
) -> None:
    base = {"--template": "t", "--language": "en", "--phone-number-id": "1"}
    for flag, value in base.items():
        if flag not in args:
            args = [*args, flag, value]
    result = wa(db_dsn, "campaign", "create", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr
    assert wa(db_dsn, "campaign", "list").stdout.strip() == "no campaigns"


def test_usage_errors_are_one_line(db_dsn: str) -> None:
    result = wa(db_dsn, "campaign", "status", "abc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "wa-sender campaign status: error: argument id: expected a whole number, got 'abc' "
        "(see wa-sender campaign status --help)"
    ]


def test_report_takes_the_campaign_id_positional_and_as_campaign(db_dsn: str) -> None:
    cid = str(_create(db_dsn)["id"])
    positional = wa(db_dsn, "report", "campaign_summary", cid, "--format", "json")
    option = wa(db_dsn, "report", "campaign_summary", "--campaign", cid, "--format", "json")
    assert positional.returncode == option.returncode == 0, positional.stderr
    assert positional.stdout == option.stdout and json.loads(positional.stdout)
    one_line_error(
        wa(db_dsn, "report", "campaign_summary", cid, "--campaign", "99"), "two campaign ids"
    )


async def test_no_live_daemon_is_a_one_line_warning_with_the_same_exit_code(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    cid = str(_create(db_dsn)["id"])
    started = wa(db_dsn, "campaign", "start", cid)
    assert started.returncode == 0 and started.stdout.strip() == f"campaign {cid} is running"
    warning = started.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: no daemon has heartbeated")
    status = wa(db_dsn, "campaign", "status", cid, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "running"
    assert status.stderr.strip() == warning[0]
    await conn.execute(
        "INSERT INTO daemons (id, hostname, pid, numbers, sent) VALUES"
        " ('host-a:42:abcd', 'host-a', 42, $1, 1200)",
        {"106540352242922": {"rate": 80.0, "effective": 40.0}},
    )
    assert wa(db_dsn, "campaign", "status", cid).stderr == ""
    listed = wa(db_dsn, "daemons")
    assert listed.returncode == 0
    [header, row] = listed.stdout.strip().splitlines()
    assert header.split()[:2] == ["DAEMON", "PID"]
    assert row.split()[:2] == ["host-a:42:abcd", "42"]
    assert "1200" in row and "106540352242922" in row and "40 of 80" in row
    [daemon] = json.loads(wa(db_dsn, "daemons", "--json").stdout)
    assert daemon["live"] is True and daemon["sent"] == 1200
    assert daemon["numbers"] == {"106540352242922": {"rate": 80.0, "effective": 40.0}}


def test_daemons_says_so_when_there_is_none(db_dsn: str) -> None:
    result = wa(db_dsn, "daemons")
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "no daemon has heartbeated in the last 10 s",
    )


HOSTILE = "Spring\x1b[31m RED\r\nforged line\u202eevil\x07"


def test_control_characters_are_escaped_in_tables_and_lines(db_dsn: str) -> None:
    cid = str(_create(db_dsn, name=HOSTILE)["id"])
    listed = wa(db_dsn, "campaign", "list")
    assert listed.returncode == 0
    out = listed.stdout
    for raw in ("\x1b", "\r", "\u202e", "\x07"):
        assert raw not in out
    assert out.count("\n") == 1  # one campaign, one line: no forged line
    assert "Spring\\x1b[31m RED\\r\\nforged line\\u202eevil\\x07" in out
    status = wa(db_dsn, "campaign", "status", cid).stdout
    assert "\x1b" not in status and "Spring\\x1b[31m" in status
    report = wa(db_dsn, "report", "campaign_summary", cid).stdout
    assert "\x1b" not in report and "\r" not in report and "\\x1b" in report
    # JSON keeps the name exactly (JSON escapes control characters itself).
    assert json.loads(wa(db_dsn, "campaign", "list", "--json").stdout)[0]["name"] == HOSTILE


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain Ünïcode 👍", "plain Ünïcode 👍"),
        ("a\tb", "a\\tb"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
        ("\u2028\u2066x\u2069", "\\u2028\\u2066x\\u2069"),
        ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),  # emoji joiners stay
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_console_logs_show_enum_values() -> None:
    out = io.StringIO()
    configure_logging("console", "info", stream=out)
    get_logger("test").info(
        "send_failed", kind=OutcomeKind.TRANSIENT, outcomes={OutcomeKind.ACCEPTED: 3},
        states=[ContactState.SENT],
    )  # fmt: skip
    line = out.getvalue()
    assert "kind=transient" in line and "{'accepted': 3}" in line and "['sent']" in line
    assert "<OutcomeKind" not in line and "ContactState." not in line


def test_asyncpg_log_records_become_one_json_line_each_with_the_traceback_inside() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        raise ConnectionResetError("server closed the connection unexpectedly")
    except ConnectionResetError:
        logging.getLogger("asyncpg.pool").warning(
            "error on closing connection to 420602123456", exc_info=True
        )
    logging.getLogger("asyncpg.protocol").info("below warnings: dropped")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["logger"] == "asyncpg.pool" and event["level"] == "warning"
    assert "ConnectionResetError" in event["exception"]
    assert "420602123456" not in lines[0]  # phone numbers masked in stdlib records too
