"""The load test with a send window (issue 19 item 8): its campaigns get the window, and
`--compare no-window` runs the same load without it, so the window's cost on the claim shows
as a ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.loadtest.options import LoadtestError, LoadtestOptions
from tests.test_loadtest import _run, on_test_server  # noqa: F401 (fixture)


def test_window_options_are_checked() -> None:
    with pytest.raises(LoadtestError, match="--window"):
        LoadtestOptions(window="Mon-Fri 9-17")
    with pytest.raises(LoadtestError, match="needs --window"):
        LoadtestOptions(systems=("wa-sender", "no-window"))
    assert LoadtestOptions(window="Daily 00:00-24:00").describe()["window"] == "Daily 00:00-24:00"


def test_loadtest_with_an_open_window_sends_everything_and_compares_without(
    on_test_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    code, report = _run(
        ["--contacts", "1500", "--window", "Daily 00:00-24:00", "--compare", "no-window"],
        tmp_path,
    )
    assert code == 0, report
    assert report["scenario"]["window"] == "Daily 00:00-24:00"
    for system in ("wa-sender", "no-window"):
        run = report["runs"][system]
        assert run["states"] == {"sent": 1500}
        assert run["invariants"]["duplicated_contacts"] == 0
    assert report["ratios"]["no-window"]["sends_per_s"] > 0


def test_loadtest_with_a_closed_window_sends_nothing(
    on_test_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A window that opens for one minute a week, not now: the seeded contacts all wait."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    import asyncpg

    from daemon.loadtest.seeding import fresh_database, prepare_database

    later = datetime.now(UTC) + timedelta(days=3)
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[later.weekday()]
    window = f"{day} {later:%H}:00-{later:%H}:01"

    async def seeded() -> tuple[int, int]:
        async with fresh_database(on_test_server) as dsn:
            await prepare_database(dsn, 300, 1, window=window)
            conn = await asyncpg.connect(dsn)
            try:
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE not_before > now()) AS waiting, count(*) AS n"
                    " FROM contacts"
                )
            finally:
                await conn.close()
            return row["waiting"], row["n"]

    assert asyncio.run(seeded()) == (300, 300)
