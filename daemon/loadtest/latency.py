"""Latency histograms with logarithmic buckets: constant memory whatever the message count.

Every sender the harness measures (the daemon's probe, the floor, the PgQueuer baseline) records
the time around its HTTP POST into one of these, per wall-clock second, and writes each
finished second as one JSON line; the harness merges the lines. Bucket width is 2 % of the
value, so a percentile read from the histogram is within 1 % of the exact one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

BASE = 1.02
_LOG_BASE = math.log(BASE)
FLOOR_MS = 0.001  # anything faster lands in bucket 0
PERCENTILES = (50.0, 90.0, 99.0)


def bucket_of(ms: float) -> int:
    if ms <= FLOOR_MS:
        return 0
    return max(0, int(math.log(ms / FLOOR_MS) / _LOG_BASE))


def bucket_value(index: int) -> float:
    """The representative value (geometric middle) of a bucket, in milliseconds."""
    return float(FLOOR_MS * BASE ** (index + 0.5))


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)

    def add(self, ms: float) -> None:
        index = bucket_of(ms)
        self.counts[index] = self.counts.get(index, 0) + 1

    def merge(self, other: Histogram | Mapping[int, int]) -> None:
        counts = other.counts if isinstance(other, Histogram) else other
        for index, n in counts.items():
            self.counts[index] = self.counts.get(index, 0) + n

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(total * p / 100.0))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))

    def summary(self) -> dict[str, float | int | None]:
        """``{"count", "p50", "p90", "p99", "max"}`` in milliseconds, rounded."""
        out: dict[str, float | int | None] = {"count": self.count}
        for p in PERCENTILES:
            value = self.percentile(p)
            out[f"p{p:g}"] = None if value is None else round(value, 3)
        out["max"] = round(bucket_value(max(self.counts)), 3) if self.counts else None
        return out


class SecondlyRecorder:
    """Per wall-clock second histograms, each written as a JSON line once its second is over.

    ``observe`` costs a dict update; memory holds one second at a time. Call ``close`` at the
    end to write the last second. Lines: ``{"t": epoch_second, "h": {bucket: count}}``.
    """

    def __init__(self, out: IO[str] | None) -> None:
        self._out = out
        self._second: int | None = None
        self._current = Histogram()
        self.total = Histogram()

    def observe(self, ms: float, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._flush()
            self._second = second
        self._current.add(ms)

    def _flush(self) -> None:
        if self._second is None or not self._current.counts:
            return
        self.total.merge(self._current)
        if self._out is not None:
            line = {"t": self._second, "h": {str(k): v for k, v in self._current.counts.items()}}
            self._out.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._out.flush()
        self._current = Histogram()

    def close(self) -> None:
        self._flush()
        self._second = None


def read_secondly(lines: Iterable[str]) -> dict[int, Histogram]:
    """Merge ``SecondlyRecorder`` lines (several files may be chained) by epoch second.

    A truncated last line (the writer was killed mid-write) is skipped.
    """
    out: dict[int, Histogram] = {}
    for line in lines:
        try:
            record: Any = json.loads(line)
            second = int(record["t"])
            counts = {int(k): int(v) for k, v in record["h"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        out.setdefault(second, Histogram()).merge(counts)
    return out


def merged(histograms: Iterable[Histogram]) -> Histogram:
    total = Histogram()
    for h in histograms:
        total.merge(h)
    return total
