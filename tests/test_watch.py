"""`campaign status --watch`: live counts, rate and ETA until the campaign is over."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from daemon.cli.campaign import watch_campaign
from daemon.config import Config, with_overrides
from daemon.db.campaigns import campaign_progress
from daemon.ops.render import progress_table
from daemon.ops.watch import RateWindow, eta_seconds
from tests.helpers.data import campaign_with_contacts

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d\d:\d\d:\d\d campaign (\d+) (\w+): (\d+)/(\d+) final \(([\d.]+)%\)(.*)$")


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),
        ([(0.0, 0)], None),
        ([(0.0, 0), (1.0, 50)], 50.0),
        ([(0.0, 0), (1.0, 50), (2.0, 150)], 75.0),
        # Older than the 10 s window: only the last sample at or before its start is kept.
        ([(0.0, 0), (5.0, 0), (12.0, 700), (16.0, 1100)], 100.0),
        ([(0.0, 10), (2.0, 10)], 0.0),
        ([(1.0, 10), (1.0, 20)], None),
    ],
)
def test_rate_over_the_window(samples: list[tuple[float, int]], expected: float | None) -> None:
    window = RateWindow(span_s=10.0)
    for at, done in samples:
        window.add(at, done)
    assert window.rate() == expected


@pytest.mark.parametrize(
    ("pending", "rate", "expected"),
    [(100, 50.0, 2.0), (0, None, 0.0), (0, 0.0, 0.0), (10, None, None), (10, 0.0, None)],
)
def test_eta(pending: int, rate: float | None, expected: float | None) -> None:
    assert eta_seconds(pending, rate) == expected


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll: the state comes from another thread or task, there is no event to await."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def _running_campaign(conn: asyncpg.Connection, tmp_path: Path, n: int) -> int:
    campaign_id = await campaign_with_contacts(conn, tmp_path, n)
    await conn.execute(
        "UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1", campaign_id
    )
    return campaign_id


async def _send(conn: asyncpg.Connection, campaign_id: int, n: int) -> None:
    await conn.execute(
        "UPDATE contacts SET state = 'sent', sent_at = now() WHERE id IN (SELECT id FROM contacts"
        " WHERE campaign_id = $1 AND state = 'initial' ORDER BY id LIMIT $2)",
        campaign_id,
        n,
    )


async def _finish(conn: asyncpg.Connection, campaign_id: int) -> None:
    await conn.execute(
        "UPDATE campaigns SET state = 'finished', finished_at = now() WHERE id = $1", campaign_id
    )


def _config(dsn: str) -> Config:
    return with_overrides(Config(), database={"url": dsn})


async def test_watch_prints_progress_lines_until_the_campaign_finishes(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    campaign_id = await _running_campaign(conn, tmp_path, 20)
    out = io.StringIO()
    watcher = asyncio.create_task(
        asyncio.to_thread(watch_campaign, _config(db_dsn), campaign_id, interval_s=0.02, out=out)
    )
    await _until(lambda: " 0/20 final" in out.getvalue())
    for done in (5, 10, 15, 20):
        await _send(conn, campaign_id, 5)
        await _until(lambda done=done: f" {done}/20 final" in out.getvalue())
    await _finish(conn, campaign_id)
    assert await asyncio.wait_for(watcher, 10) == 0

    text = out.getvalue()
    assert "\x1b" not in text  # not a terminal: no cursor movements
    final = progress_table(await campaign_progress(conn, campaign_id))
    assert text.endswith(final + "\n")
    progress = [m for m in map(LINE.match, text[: -len(final) - 1].splitlines()) if m]
    assert len(progress) == len(text[: -len(final) - 1].splitlines())  # every line is one
    assert {int(m[1]) for m in progress} == {campaign_id}
    assert {m[2] for m in progress} == {"running"}
    done = [int(m[3]) for m in progress]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 20
    assert all(m[4] == "20" for m in progress)
    assert "/s" not in progress[0][6]  # one sample: no rate yet
    with_eta = [m for m in progress if "ETA" in m[6]]
    assert any(int(m[3]) < 20 for m in with_eta)
    assert all(m[6].endswith("ETA 0s") for m in with_eta if m[3] == "20")


async def test_watch_redraws_in_place_on_a_terminal(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    campaign_id = await _running_campaign(conn, tmp_path, 4)
    out = Terminal()
    watcher = asyncio.create_task(
        asyncio.to_thread(watch_campaign, _config(db_dsn), campaign_id, interval_s=0.02, out=out)
    )
    await _until(lambda: "\x1b[" in out.getvalue())
    await _send(conn, campaign_id, 4)
    await _until(lambda: "(4/4 final)" in out.getvalue())
    await _finish(conn, campaign_id)
    assert await asyncio.wait_for(watcher, 10) == 0

    text = out.getvalue()
    final = progress_table(await campaign_progress(conn, campaign_id))
    table_lines = final.count("\n") + 1
    redraw = f"\x1b[{table_lines}F\x1b[J"
    assert text.endswith(redraw + final + "\n")
    frames = text.split(redraw)
    assert len(frames) >= 3
    assert all(frame.count("\n") == table_lines for frame in frames)
    assert "Campaign" in frames[0] and "running" in frames[0]


async def test_watch_of_a_finished_campaign_prints_the_final_table(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    campaign_id = await _running_campaign(conn, tmp_path, 3)
    await _finish(conn, campaign_id)
    out = io.StringIO()
    code = await asyncio.to_thread(watch_campaign, _config(db_dsn), campaign_id, out=out)
    assert code == 0
    assert out.getvalue() == progress_table(await campaign_progress(conn, campaign_id)) + "\n"


async def test_ctrl_c_stops_watching_with_exit_code_130(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    campaign_id = await _running_campaign(conn, tmp_path, 3)
    script = (
        "import sys\n"
        "from daemon.config import Config, with_overrides\n"
        "from daemon.cli.campaign import watch_campaign\n"
        "config = with_overrides(Config(), database={'url': sys.argv[1]})\n"
        "sys.exit(watch_campaign(config, int(sys.argv[2]), interval_s=0.05))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        db_dsn,
        str(campaign_id),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert f"campaign {campaign_id} running: 0/3 final" in first.decode()
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    assert b"Traceback" not in err, err.decode()
    assert (await campaign_progress(conn, campaign_id)).campaign.state.value == "running"


async def test_watching_an_unknown_campaign_is_an_error(db_dsn: str) -> None:
    from daemon.errors import NotFoundError

    with pytest.raises(NotFoundError, match="campaign 999 does not exist"):
        await asyncio.to_thread(watch_campaign, _config(db_dsn), 999, out=io.StringIO())
