"""Live progress of one campaign (`wa-sender campaign status ID --watch`, in cli.campaign).

On a terminal the progress table is redrawn in place; otherwise one progress line is printed
per refresh. Either way the final table is printed once the campaign is finished or
canceled. Ctrl-C stops watching (exit code 130); the campaign is not affected.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import asyncpg

from daemon.core.model import CampaignProgress
from daemon.core.states import CampaignState
from daemon.db.campaigns import campaign_progress
from daemon.ops.render import printable, progress_table

DONE_STATES = frozenset({CampaignState.FINISHED, CampaignState.CANCELED})
RATE_WINDOW_S = 10.0


class RateWindow:
    """Contacts finalised per second over the samples of the last `span_s` seconds."""

    def __init__(self, span_s: float = RATE_WINDOW_S) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, done: int) -> None:
        """One sample: `done` contacts final at time `at`."""
        self._samples.append((at, done))
        # Keep one sample at or before the window's start so the window stays `span_s` wide.
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.span_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        """None until two samples exist."""
        if len(self._samples) < 2:
            return None
        (t0, done0), (t1, done1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (done1 - done0) / (t1 - t0))


def eta_seconds(pending: int, rate: float | None) -> float | None:
    """Seconds until `pending` contacts are done at `rate` (None without a rate)."""
    if pending <= 0:
        return 0.0
    if not rate:
        return None
    return pending / rate


def progress_line(p: CampaignProgress, rate: float | None, eta_s: float | None, now: str) -> str:
    """One line of progress, for output that is not a terminal."""
    c = p.campaign
    line = (
        f"{now} campaign {c.id} {c.state.value}: {p.done}/{p.total} final ({p.percent_done:.1f}%)"
    )
    if rate is not None:
        line += f", {rate:,.1f}/s"
    if eta_s is not None:
        line += f", ETA {eta_s:,.0f}s"
    reason = c.pause_reason or c.hold_reason
    if reason:
        line += f" ({printable(reason)})"
    return line


class _Screen:
    """Redraws a block of lines in place with ANSI cursor movements."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lines = 0

    def draw(self, text: str) -> None:
        """Replace the block drawn last with `text`."""
        prefix = f"\x1b[{self.lines}F\x1b[J" if self.lines else ""
        self.out.write(prefix + text + "\n")
        self.out.flush()
        self.lines = text.count("\n") + 1


async def watch(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    interval_s: float = 1.0,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Refresh until the campaign is finished or canceled, then print its final table."""
    tty = out.isatty()
    screen = _Screen(out)
    window = RateWindow()
    while True:
        progress = await campaign_progress(conn, campaign_id)
        if progress.campaign.state in DONE_STATES:
            break
        window.add(clock(), progress.done)
        rate = window.rate()
        eta = eta_seconds(progress.total - progress.done, rate)
        if tty:
            screen.draw(progress_table(progress, rate=rate, eta_s=eta))
        else:
            stamp = datetime.now().strftime("%H:%M:%S")
            out.write(progress_line(progress, rate, eta, stamp) + "\n")
            out.flush()
        await asyncio.sleep(interval_s)
    if tty:
        screen.draw(progress_table(progress))
    else:
        out.write(progress_table(progress) + "\n")
        out.flush()
