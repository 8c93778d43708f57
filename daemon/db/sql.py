"""SQL lives in `sql/`: migrations in order, and the daemon's queries as named blocks.

A query file holds blocks that start with a `-- name: <name>` line; the blocks of every file
under `sql/queries/` are loaded once into one dict. A `-- fragment: <name>` block is no query:
it is text that queries share, put in by a line `-- include: <fragment> key=value ...`; each
`<<key>>` of the fragment becomes its value (a parameter such as `$2`, or another fragment's
name: that fragment's text). Two statements that must apply the same rules then hold one copy.
Values are `$1` parameters; the few statements that name a database (DDL takes no parameters)
carry `{placeholders}` that `query_with_identifiers` fills with quoted identifiers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# daemon/sql is a link to the repository's sql/ (a real directory inside an installed wheel).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_NAME_LINE = re.compile(r"^--\s*(name|fragment):\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"^--\s*include:\s*(\w+)((?:\s+\w+=\S+)*)\s*$", re.MULTILINE)
_SLOT = re.compile(r"<<(\w+)>>")
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _blocks(text: str, origin: str) -> tuple[dict[str, str], dict[str, str]]:
    parts = _NAME_LINE.split(text)
    named: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        blocks = named if kind == "name" else fragments
        if name in blocks:
            raise ValueError(
                f"{origin}: {'query' if kind == 'name' else kind} {name!r} is defined twice"
            )
        blocks[name] = body.strip()
    return named, fragments


def parse_named_blocks(text: str, origin: str = "<sql>") -> dict[str, str]:
    """The `-- name: x` blocks of a SQL file, by name (fragments left out, includes as
    written); ValueError for a name used twice."""
    return _blocks(text, origin)[0]


def expand_includes(text: str, fragments: Mapping[str, str]) -> str:
    """`text` with each `-- include:` line replaced by its fragment, slots filled; ValueError
    for an unknown fragment or a slot without a value."""

    def include(match: re.Match[str]) -> str:
        name = match[1]
        if name not in fragments:
            raise ValueError(f"include of unknown fragment {name!r}")
        values = dict(pair.split("=", 1) for pair in match[2].split())

        def slot(found: re.Match[str]) -> str:
            if found[1] not in values:
                raise ValueError(f"fragment {name!r}: no value for <<{found[1]}>>")
            value = values[found[1]]
            return fragments.get(value, value)

        return _SLOT.sub(slot, fragments[name])

    return _INCLUDE_LINE.sub(include, text)


@functools.cache
def queries() -> Mapping[str, str]:
    """Every named query of sql/queries/*.sql (read once), includes expanded; ValueError for a
    name in two files."""
    found: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for path in sorted((SQL_DIR / "queries").glob("*.sql")):
        named, shared = _blocks(path.read_text(encoding="utf-8"), str(path))
        for name, body in named.items():
            if name in found:
                raise ValueError(f"{path}: query {name!r} is defined in another file too")
            found[name] = body
        for name, body in shared.items():
            if name in fragments:
                raise ValueError(f"{path}: fragment {name!r} is defined in another file too")
            fragments[name] = body
    return {name: expand_includes(body, fragments) for name, body in found.items()}


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
