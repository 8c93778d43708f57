"""PostgreSQL's own account of a run: time per statement (`pg_stat_statements`, which the
embedded cluster of `wa-sender loadtest` preloads) and WAL bytes written.

`start` (after seeding) resets this database's statement statistics and notes the WAL
position; `finish` reads both back. Every statement is named by the query of `sql/queries/`
it came from; the receipts path is the statements of `sql/queries/receipts.sql`. Without the
extension (a `DATABASE_URL` server that does not load it) only the WAL figures are given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from daemon.db.sql import SQL_DIR, parse_named_blocks, queries, query

PRELOAD_OPTIONS: Final = (
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track_planning=on",
    "pg_stat_statements.max=2000",
)
"""Server options of the load test's embedded cluster."""
NOT_RECEIPTS: Final = frozenset({"ping"})
_SPACE = re.compile(r"\s+")
_COMMENT = re.compile(r"--[^\n]*")
# pg_stat_statements shows constants as $n: both sides lose constants and parameters alike.
_CONSTANT = re.compile(
    r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b|(?<!IS )(?<!NOT )\b(?:NULL|true|false)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PgMark:
    """Where a run started: the WAL position, and whether statement statistics are kept."""

    wal: int
    statements: bool


def receipt_queries() -> frozenset[str]:
    """The names of the receipts path's statements (sql/queries/receipts.sql)."""
    text = (SQL_DIR / "queries" / "receipts.sql").read_text(encoding="utf-8")
    return frozenset(parse_named_blocks(text)) - NOT_RECEIPTS


async def start(conn: asyncpg.Connection) -> PgMark:
    """Reset this database's statement statistics (when the extension can be loaded) and note
    the WAL position."""
    statements = False
    if await conn.fetchval(query("loadtest_pgss_available")):
        await conn.execute(query("loadtest_pgss_create"))
        await conn.execute(query("loadtest_pgss_reset"))
        statements = True
    wal: int = int(await conn.fetchval(query("loadtest_wal_lsn")))
    return PgMark(wal, statements)


async def finish(conn: asyncpg.Connection, mark: PgMark) -> dict[str, Any]:
    """WAL bytes since `mark` and, when kept, every statement's calls, rows, plan and exec
    milliseconds and WAL bytes, by query name (largest total time first)."""
    wal = int(await conn.fetchval(query("loadtest_wal_lsn"))) - mark.wal
    out: dict[str, Any] = {"wal_bytes": wal, "statements": None}
    if not mark.statements:
        return out
    names = {_normal(text): name for name, text in queries().items()}
    by_name: dict[str, dict[str, float]] = {}
    for row in await conn.fetch(query("loadtest_pgss_statements")):
        text = row["query"] or ""
        name = names.get(_normal(text)) or "other: " + _normal(text)[:60]
        entry = by_name.setdefault(
            name, {"calls": 0, "rows": 0, "exec_ms": 0.0, "plan_ms": 0.0, "wal_bytes": 0.0}
        )
        for key in entry:
            entry[key] += row[key] or 0
    out["statements"] = {
        name: {k: round(v, 3) if isinstance(v, float) else v for k, v in entry.items()}
        for name, entry in sorted(
            by_name.items(), key=lambda kv: -(kv[1]["exec_ms"] + kv[1]["plan_ms"])
        )
    }
    return out


def per_receipt(stats: dict[str, Any] | None, receipts: int) -> dict[str, Any] | None:
    """The receipts path's statements per stored receipt: µs planning + executing each, and
    their WAL bytes; None without statement statistics or receipts."""
    if not stats or not stats.get("statements") or receipts <= 0:
        return None
    wanted = receipt_queries()
    by_statement: dict[str, Any] = {}
    total_us = wal = 0.0
    for name, entry in stats["statements"].items():
        if name not in wanted:
            continue
        us = (entry["exec_ms"] + entry["plan_ms"]) * 1000.0 / receipts
        total_us += us
        wal += entry["wal_bytes"]
        by_statement[name] = {
            "us_per_receipt": round(us, 2),
            "plan_us_per_receipt": round(entry["plan_ms"] * 1000.0 / receipts, 2),
            "calls": entry["calls"],
            "rows_per_call": round(entry["rows"] / entry["calls"], 1) if entry["calls"] else None,
            "wal_bytes_per_receipt": round(entry["wal_bytes"] / receipts, 1),
        }
    return {
        "statement_us_per_receipt": round(total_us, 2),
        "statement_wal_bytes_per_receipt": round(wal / receipts, 1),
        "by_statement": by_statement,
    }


def _normal(text: str) -> str:
    """A statement without comments, constants or parameters, spaces collapsed."""
    text = _CONSTANT.sub("?", _COMMENT.sub("", text))
    return _SPACE.sub(" ", text).strip().rstrip(";").strip()
