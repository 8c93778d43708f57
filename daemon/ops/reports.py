"""SQL reports: `sql/reports/NAME.sql`, run with psql or with `wa-sender report NAME`.

A report file is one query written for psql. It names the campaign as the psql variable
`:campaign_id` (NULL: every campaign), and may start with psql meta-commands such as
`\\if :{?campaign_id} \\else \\set campaign_id NULL \\endif` so that psql without
`-v campaign_id=N` reports on every campaign. To run it here the meta-command lines are
dropped and the variable becomes the query parameter `$1::bigint`. A report that does not
use the variable is not per campaign.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from daemon.db.campaigns import get_campaign
from daemon.db.sql import report_path
from daemon.errors import NotFoundError, WaSenderError
from daemon.ops.render import csv_safe, printable

FORMATS = ("table", "csv", "json")

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_VARIABLE = re.compile(r"(?<!:):(?:'campaign_id'|campaign_id\b)")


def reports_dir() -> Path:
    """sql/reports/."""
    return report_path("_").parent


def available_reports() -> list[str]:
    """The report names, sorted."""
    return sorted(p.stem for p in reports_dir().glob("*.sql") if _NAME.fullmatch(p.stem))


def report_text(name: str) -> str:
    """The report file as psql runs it; an unknown name lists the available ones."""
    path = report_path(name)
    if not _NAME.fullmatch(name) or not path.is_file():
        raise NotFoundError(
            f"unknown report {name!r}; available: {', '.join(available_reports()) or '(none)'}"
        )
    return path.read_text(encoding="utf-8")


def to_parameterised(psql_text: str) -> str:
    """psql report text -> one query with `$1` for the campaign id."""
    lines = [line for line in psql_text.splitlines() if not line.lstrip().startswith("\\")]
    return _VARIABLE.sub("$1::bigint", "\n".join(lines)).strip()


@dataclass(frozen=True)
class ReportResult:
    """A report's columns and rows."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


async def run_report(
    conn: asyncpg.Connection, name: str, campaign_id: int | None = None
) -> ReportResult:
    """Run a report for one campaign, or for every campaign when `campaign_id` is None."""
    sql = to_parameterised(report_text(name))
    if campaign_id is not None:
        await get_campaign(conn, campaign_id)
    async with conn.transaction(readonly=True):
        statement = await conn.prepare(sql)
        parameters = statement.get_parameters()
        if len(parameters) > 1:
            raise WaSenderError(f"report {name!r} uses variables other than :campaign_id")
        if not parameters and campaign_id is not None:
            raise WaSenderError(f"report {name!r} is not per campaign: run it without --campaign")
        records = await statement.fetch(*([campaign_id] if parameters else []))
        columns = tuple(a.name for a in statement.get_attributes())
    return ReportResult(name, columns, [tuple(r.values()) for r in records])


def render(result: ReportResult, fmt: str) -> str:
    """The result as `fmt`: table, csv or json."""
    if fmt == "table":
        return render_table(result)
    if fmt == "csv":
        return render_csv(result)
    if fmt == "json":
        return render_json(result)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def render_table(result: ReportResult) -> str:
    """Aligned columns like psql's: numbers right-aligned, NULL empty, a row count at the end."""
    cells = [[printable(_text(v, table=True)) for v in row] for row in result.rows]
    numeric = [
        all(row[i] is None or _is_number(row[i]) for row in result.rows)
        and any(row[i] is not None for row in result.rows)
        for i in range(len(result.columns))
    ]
    columns = [printable(name) for name in result.columns]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    lines = [
        "  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in cells:
        lines.append(
            "  ".join(
                (cell.rjust(w) if is_num else cell.ljust(w))
                for cell, w, is_num in zip(row, widths, numeric, strict=True)
            ).rstrip()
        )
    n = len(result.rows)
    lines.append(f"({n} row{'' if n == 1 else 's'})")
    return "\n".join(lines)


def render_csv(result: ReportResult) -> str:
    """The result as CSV, a header row first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([csv_safe(_text(v, table=False)) for v in row] for row in result.rows)
    return buffer.getvalue().rstrip("\n")


def render_json(result: ReportResult) -> str:
    """The result as a JSON array of objects, one per row."""
    return json.dumps(
        [
            {name: _json_value(v) for name, v in zip(result.columns, row, strict=True)}
            for row in result.rows
        ],
        indent=2,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _text(value: object, *, table: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(value) if table else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _json_value(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):  # numeric: an exact whole number (sum of counts) or a float
        return int(value) if value.as_tuple().exponent == 0 else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_json_value(v) for v in value]
    return str(value)
