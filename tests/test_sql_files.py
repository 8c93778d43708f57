"""SQL lives in `sql/`: no SQL string in the daemon's Python code but the migration runner's
own bootstrap; identifiers that DDL must name are quoted, never formatted in; the
unknown-outcome rule is one function that the planner inlines into both queries using it."""

from __future__ import annotations

import ast
import json
import re
import uuid

import asyncpg
import pytest

from daemon.db.database import create_database, drop_database
from daemon.db.sql import (
    SQL_DIR,
    expand_includes,
    parse_named_blocks,
    queries,
    query,
    query_with_identifiers,
    quote_ident,
)
from tests.helpers.proc import REPO

DAEMON = REPO / "daemon"
# The migration runner creates and reads its own table before any migration exists.
ALLOWED = {DAEMON / "db" / "migrate.py": re.compile(r"schema_migrations|pg_advisory_(un)?lock")}

# A statement at the start of a string: the uppercase keyword alone where prose could start
# with the word ("Select ..."), or a keyword pair that prose does not write, in any case.
SQL_START = re.compile(
    r"""^\s*(?:
        (?:SELECT|ANALYZE|VACUUM|TRUNCATE|EXPLAIN|SHOW|BEGIN|COMMIT|ROLLBACK)\b
      | (?i:with\s+\w+\s+as\s*\()
      | (?i:insert\s+into\b)
      | (?i:update\s+\w+(?:\s+as\s+\w+)?\s+set\b)
      | (?i:delete\s+from\b)
      | (?i:(?:create|drop|alter)\s+(?:or\s+replace\s+|unique\s+)?
            (?:table|database|index|function|type|view|schema|extension|trigger|sequence|role)\b)
      | (?i:(?:listen|unlisten|notify)\s+\w+\s*(?:;|,|$))
      | (?i:copy\s+\w+\s*(?:\(|from|to)\b)
      | (?i:set\s+(?:local\s+)?\w+\s*(?:=|to)\s)
    )""",
    re.VERBOSE,
)


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string in `source` that starts like an SQL statement: constants
    and f-strings (their formatted parts read as `{}`), docstrings left out."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        text: str | None = None
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            text = node.value
        if text is not None and SQL_START.match(text):
            found.append((node.lineno, text))
    return found


@pytest.mark.parametrize(
    ("source", "is_sql"),
    [
        ('q = "SELECT 1"', True),
        ('q = """\n    SELECT id FROM contacts\n"""', True),
        ("q = 'select ' + 'x'", False),  # lowercase bare keyword: prose-like, not flagged
        ("q = 'insert into contacts (phone) values ($1)'", True),
        ("q = 'UPDATE contacts AS c SET state = $1'", True),
        ("q = 'delete from suppressions'", True),
        ("q = f'CREATE DATABASE \"{name}\"'", True),
        ("q = f'DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)'", True),
        ("q = 'ANALYZE contacts'", True),
        ("q = 'WITH x AS (SELECT 1) SELECT * FROM x'", True),
        ("q = 'SET LOCAL plan_cache_mode = force_custom_plan'", True),
        ("q = 'NOTIFY wa_sender_receipts'", True),
        ('q = "SELECT " + column + " FROM t"', True),
        ('def f() -> None:\n    """SELECT in a docstring is prose."""', False),
        ("h = 'create a draft campaign and print its id'", False),
        ("h = 'Select the campaign to watch'", False),
        ("h = 'update the campaign set'", False),
        ("c = 'NOTIFY channel: receipts were stored (payload: how many).'", False),
        ("k = 'drop'", False),
    ],
)
def test_the_scan_tells_sql_strings_from_prose(source: str, is_sql: bool) -> None:
    assert bool(sql_strings(source)) is is_sql


def test_no_sql_string_in_python_outside_sql_but_the_migration_bootstrap() -> None:
    stray: list[str] = []
    for path in sorted(DAEMON.rglob("*.py")):
        allowed = ALLOWED.get(path)
        for line, text in sql_strings(path.read_text(encoding="utf-8")):
            if allowed is None or not allowed.search(text):
                stray.append(f"{path.relative_to(REPO)}:{line}: {text.strip()[:70]!r}")
    assert stray == [], "SQL belongs in sql/queries/*.sql as a named block:\n" + "\n".join(stray)


def test_the_allowed_bootstrap_is_still_where_the_exception_says() -> None:
    for path, pattern in ALLOWED.items():
        found = sql_strings(path.read_text(encoding="utf-8"))
        assert found and all(pattern.search(text) for _, text in found), path


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("loadtest_ab12", '"loadtest_ab12"'),
        ("Mixed Case", '"Mixed Case"'),
        ('a"b', '"a""b"'),
        ('"; DROP DATABASE x; --', '"""; DROP DATABASE x; --"'),
    ],
)
def test_identifiers_are_quoted_with_inner_quotes_doubled(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_an_identifier_postgresql_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        quote_ident(name)


def test_a_query_gets_exactly_the_identifiers_it_names() -> None:
    sql = query_with_identifiers("drop_database", database='x"y')
    assert sql.endswith('DROP DATABASE IF EXISTS "x""y" WITH (FORCE);')
    with pytest.raises(ValueError, match="takes identifiers"):
        query_with_identifiers("create_database_from_template", database="a")
    with pytest.raises(ValueError, match="takes identifiers"):
        query_with_identifiers("create_database", database="a", template="b")


async def test_a_database_named_with_a_quote_is_created_and_dropped(
    pg_server_dsn: str, template_db: str
) -> None:
    name = f'wa_q"{uuid.uuid4().hex[:6]}'
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await create_database(admin, name, template=template_db)
        listed = "SELECT count(*) FROM pg_database WHERE datname = $1"
        assert await admin.fetchval(listed, name) == 1
        await drop_database(admin, name)
        assert await admin.fetchval(listed, name) == 0
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("policy", "attempts", "unknown_attempts", "max_attempts", "max_unknown", "state"),
    [
        ("reconcile", 1, 0, 3, 5, "retry_scheduled"),
        ("retry", 1, 0, 3, 5, "retry_scheduled"),
        ("error", 1, 0, 3, 5, "error"),
        # The expired attempt is not counted: 3 made, 1 of them unknown before, 1 counted.
        ("reconcile", 3, 1, 2, 5, "retry_scheduled"),
        ("reconcile", 4, 1, 2, 5, "error"),  # 2 counted attempts already use up max 2
        ("reconcile", 5, 4, 3, 5, "error"),  # this is unknown outcome number 5 of max 5
        ("retry", 4, 3, 3, 5, "retry_scheduled"),  # unknown outcome number 4 of max 5
    ],
)
async def test_unknown_outcome_state_follows_the_rule(
    conn: asyncpg.Connection,
    policy: str,
    attempts: int,
    unknown_attempts: int,
    max_attempts: int,
    max_unknown: int,
    state: str,
) -> None:
    got = await conn.fetchval(
        "SELECT unknown_outcome_state($1, $2, $3, $4, $5)::text",
        policy,
        attempts,
        unknown_attempts,
        max_attempts,
        max_unknown,
    )
    assert got == state


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("expire_leases", ("reconcile", 30.0, 3, 60.0, 1000, "d1", 5)),
        ("expire_own_contacts", ([1, 2], "reconcile", 30.0, 3, "d1", 5)),
    ],
)
async def test_the_unknown_outcome_rule_is_inlined_into_the_query(
    conn: asyncpg.Connection, name: str, args: tuple[object, ...]
) -> None:
    """Planned as if the CASE were written in the query: no function call per row."""
    plan = await conn.fetchval("EXPLAIN (VERBOSE, FORMAT JSON) " + query(name), *args)
    text = json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    assert "unknown_outcome_state" not in text
    assert "'error'::contact_state" in text


def test_the_rule_is_written_once() -> None:
    sender_sql = (REPO / "sql" / "queries" / "sender.sql").read_text(encoding="utf-8")
    assert "c.attempts - c.unknown_attempts - 1 >=" not in sender_sql
    assert sender_sql.count("unknown_outcome_state(") == 4  # state and failed_at, twice
    migrations = "".join(p.read_text() for p in (REPO / "sql" / "migrations").glob("*.sql"))
    assert migrations.count("attempts - unknown_attempts - 1 >= max_attempts") == 1


def test_an_include_puts_in_its_fragment_with_the_slots_filled() -> None:
    fragments = {"rule": "x = <<a>> AND <<b>>", "extra": "y IS NULL"}
    text = "SELECT 1\n-- include: rule a=$2 b=extra\nFROM t"
    assert expand_includes(text, fragments) == "SELECT 1\nx = $2 AND y IS NULL\nFROM t"
    with pytest.raises(ValueError, match="unknown fragment 'nope'"):
        expand_includes("-- include: nope a=$1", fragments)
    with pytest.raises(ValueError, match="no value for <<b>>"):
        expand_includes("-- include: rule a=$1", fragments)


def test_fragments_are_not_queries_and_the_receipt_rules_stand_once() -> None:
    text = (SQL_DIR / "queries" / "receipts.sql").read_text(encoding="utf-8")
    assert "receipt_rules" not in parse_named_blocks(text)
    assert "receipt_rules" not in queries()
    assert text.count("per_contact AS (") == 1  # one copy of the rules in the file
    for name, codes in (("reconcile_receipts", "$2"), ("ingest_receipts", "$24")):
        body = query(name)
        assert "<<" not in body and "-- include:" not in body
        assert f"m.error_code = ANY({codes}::int[])" in body
