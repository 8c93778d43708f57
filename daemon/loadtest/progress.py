"""The progress line on stderr while a run goes: a bar redrawn in place on a terminal, a plain
line every few seconds otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 28
PLAIN_EVERY_S = 5.0


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:5.1f}%"


def progress_line(
    label: str, done: int, total: int, rate: float | None, elapsed_s: float, extra: str = ""
) -> str:
    rate_text = f"{rate:8.0f}/s" if rate is not None else "        -"
    line = f"{label:<10} {bar(done, total)} {done:>9,}/{total:,} {rate_text} {elapsed_s:6.1f}s"
    return f"{line}  {extra}" if extra else line


class Progress:
    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def note(self, text: str) -> None:
        if self.quiet:
            return
        self._end_line()
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(
        self,
        label: str,
        done: int,
        total: int,
        rate: float | None,
        elapsed_s: float,
        extra: str = "",
    ) -> None:
        if self.quiet:
            return
        line = progress_line(label, done, total, rate, elapsed_s, extra)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            now = time.monotonic()
            if now - self._last_plain < PLAIN_EVERY_S:
                return
            self._last_plain = now
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        self._end_line()

    def _end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
