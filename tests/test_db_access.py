"""The database reachable from outside wa-sender: `db psql` and `db url` on the embedded server
(no DATABASE_URL) and on a configured one, and the README's report recipe run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.db.pgbinaries import find_binaries
from tests.helpers.data import write_csv
from tests.helpers.proc import REPO
from tests.test_cli import one_line_error, wa

RECIPE = re.compile(r"<!-- recipe: reports-with-psql -->\n```sh\n(.*?)```", re.DOTALL)


@pytest.fixture
def embedded_env() -> Iterator[dict[str, str]]:
    """No DATABASE_URL: a persistent embedded cluster in a directory of its own (not pytest's
    tmp_path: as root, the server user must traverse every parent), its keeper stopped after."""
    root = Path(tempfile.mkdtemp(prefix="wasender-dbaccess-"))
    root.chmod(0o755)
    env = {"WA_SENDER_DATABASE_EMBEDDED_DIR": str(root / "pgdata")}
    try:
        yield env
    finally:
        wa(None, "db", "stop", env=env)
        shutil.rmtree(root, ignore_errors=True)


def test_psql_runs_on_the_embedded_database_without_database_url(
    embedded_env: dict[str, str],
) -> None:
    assert "DATABASE_URL" not in embedded_env
    result = wa(None, "db", "psql", "--", "-At", "-c", "select 1", env=embedded_env)
    assert (result.returncode, result.stdout.strip()) == (0, "1"), result.stderr
    # migrated: the schema is there
    tables = wa(None, "db", "psql", "--", "-At", "-c", "select count(*) from campaigns",
                env=embedded_env)  # fmt: skip
    assert tables.stdout.strip() == "0"


def test_psql_exit_code_is_the_commands(embedded_env: dict[str, str]) -> None:
    result = wa(None, "db", "psql", "--", "-v", "ON_ERROR_STOP=1", "-c", "select nope",
                env=embedded_env)  # fmt: skip
    assert result.returncode == 1 and "nope" in result.stderr


def _three_campaigns(dsn: str | None, env: dict[str, str], tmp_path: Path) -> None:
    """Campaigns 1, 2 and 3; campaign 3 with contacts."""
    for name in ("one", "two", "three"):
        created = wa(dsn, "campaign", "create", "--name", name, "--template", "spring_sale",
                     "--language", "en_US", "--param", "first_name", "--phone-number-id", "12",
                     env=env)  # fmt: skip
        assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "3"
    csv_path = write_csv(tmp_path / "c.csv", [("16505551234", "Anna"), ("abc", "X")])
    assert wa(dsn, "contacts", "import", "3", str(csv_path), env=env).returncode == 0


def run_recipe(env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """The README's recipe, line by line, as a shell runs it (wa-sender on PATH)."""
    block = RECIPE.search((REPO / "README.md").read_text())
    assert block, "README.md has no reports-with-psql recipe"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WA_SENDER_")}
    environ.pop("DATABASE_URL", None)
    environ.update(env)
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 3
    return [
        subprocess.run(
            ["bash", "-c", f"set -euo pipefail; {line}"],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for line in lines
    ]


def _check_recipe(results: list[subprocess.CompletedProcess[str]]) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr
    report, by_url, by_psql = (r.stdout for r in results)
    assert report.splitlines()[0].startswith("campaign_id,")
    for psql_out in (by_url, by_psql):
        assert " 3 | three " in psql_out or "| three" in psql_out, psql_out
    assert by_url == by_psql


def test_the_readme_recipe_works_on_the_embedded_database(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    _three_campaigns(None, embedded_env, tmp_path)
    _check_recipe(run_recipe(embedded_env))
    stopped = wa(None, "db", "stop", env=embedded_env)
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped the embedded")
    again = wa(None, "db", "stop", env=embedded_env)
    assert again.stdout.startswith("no embedded PostgreSQL server runs on")


def test_the_readme_recipe_works_with_database_url(db_dsn: str, tmp_path: Path) -> None:
    _three_campaigns(db_dsn, {}, tmp_path)
    _check_recipe(run_recipe({"DATABASE_URL": db_dsn}))
    url = wa(db_dsn, "db", "url")
    assert (url.returncode, url.stdout.strip()) == (0, db_dsn)


def test_without_psql_it_says_so_in_one_line(db_dsn: str, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"  # server binaries but no psql, and nothing on PATH
    bindir.mkdir()
    for name in ("initdb", "postgres"):
        (bindir / name).symlink_to(find_binaries().bindir / name)
    env = {"PG_BINDIR": str(bindir), "PATH": str(tmp_path / "empty")}
    one_line_error(
        wa(db_dsn, "db", "psql", "--", "-c", "select 1", env=env), "psql is not installed"
    )
