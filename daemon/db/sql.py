"""SQL lives in `sql/`: migrations in order, and the daemon's queries as named blocks.

A query file holds blocks that start with a `-- name: <name>` line; the blocks of every file
under `sql/queries/` are loaded once into one dict. Values are `$1` parameters; the few
statements that name a database (DDL takes no parameters) carry `{placeholders}` that
`query_with_identifiers` fills with quoted identifiers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# daemon/sql is a link to the repository's sql/ (a real directory inside an installed wheel).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def parse_named_blocks(text: str, origin: str = "<sql>") -> dict[str, str]:
    """The `-- name: x` blocks of a SQL file, by name; ValueError for a name used twice."""
    parts = _NAME_LINE.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"{origin}: query {name!r} is defined twice")
        blocks[name] = body.strip()
    return blocks


@functools.cache
def queries() -> Mapping[str, str]:
    """Every named query of sql/queries/*.sql (read once); ValueError for a name in two files."""
    found: dict[str, str] = {}
    for path in sorted((SQL_DIR / "queries").glob("*.sql")):
        for name, body in parse_named_blocks(path.read_text(encoding="utf-8"), str(path)).items():
            if name in found:
                raise ValueError(f"{path}: query {name!r} is defined in another file too")
            found[name] = body
    return found


def query(name: str) -> str:
    """The named query's text (a `KeyError` for an unknown name)."""
    return queries()[name]


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier: any `"` doubled, the whole wrapped in `"`."""
    if not name or "\x00" in name:
        raise ValueError("an SQL identifier is a non-empty string without NUL characters")
    return '"' + name.replace('"', '""') + '"'


def query_with_identifiers(name: str, /, **identifiers: str) -> str:
    """The named query with each `{key}` replaced by `quote_ident(identifiers[key])`; every
    placeholder must be given and every identifier used."""
    text = query(name)
    wanted = set(_PLACEHOLDER.findall(text))
    if wanted != set(identifiers):
        raise ValueError(
            f"query {name!r} takes identifiers {sorted(wanted)}, given {sorted(identifiers)}"
        )
    return _PLACEHOLDER.sub(lambda m: quote_ident(identifiers[m[1]]), text)


@dataclass(frozen=True)
class Migration:
    """One file of sql/migrations/: its version, name and SQL."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations in version order; ValueError for a misnamed file or a version used twice."""
    found: list[Migration] = []
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


def report_path(name: str) -> Path:
    """The file of a named SQL report."""
    return SQL_DIR / "reports" / f"{name}.sql"
