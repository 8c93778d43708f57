"""Random fault decisions of the mock, drawn from one seeded RNG for reproducible runs."""

from __future__ import annotations

import random
from typing import Literal, NamedTuple

from daemon.mockapi.config import FaultConfig

FaultKind = Literal["drop", "timeout", "transient", "permanent", "fatal"]


class Fault(NamedTuple):
    """What happens to one request instead of a normal answer."""

    kind: FaultKind
    code: int | None = None
    """The error code for transient/permanent/fatal faults."""
    after_accept: bool = False
    """For drop/timeout: the message was accepted before the response got lost."""


class FaultInjector:
    """One draw per request decides its fate; the rates are exclusive outcomes."""

    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        bands: list[tuple[float, FaultKind, tuple[int, ...]]] = []
        edge = 0.0
        candidates: tuple[tuple[float, FaultKind, tuple[int, ...]], ...] = (
            (config.drop_rate, "drop", ()),
            (config.timeout_rate, "timeout", ()),
            (config.transient_rate, "transient", config.transient_codes),
            (config.permanent_rate, "permanent", config.permanent_codes),
            (config.fatal_rate, "fatal", config.fatal_codes),
        )
        for rate, kind, codes in candidates:
            if rate > 0:
                edge += rate
                bands.append((edge, kind, codes))
        self._bands = bands
        self._latency_s = config.latency_ms / 1000.0
        self._jitter_s = config.jitter_ms / 1000.0

    @property
    def has_latency(self) -> bool:
        """Whether answers wait at all (fixed latency or jitter)."""
        return self._latency_s > 0 or self._jitter_s > 0

    def latency_s(self) -> float:
        """This answer's delay in seconds: the fixed latency plus drawn jitter."""
        jitter = self._jitter_s
        if jitter <= 0:
            return self._latency_s
        if self.config.jitter == "exponential":
            return self._latency_s + self.rng.expovariate(1.0 / jitter)
        return self._latency_s + self.rng.uniform(0.0, jitter)

    def draw(self) -> Fault | None:
        """This request's fault, or None for a normal answer."""
        if not self._bands:
            return None
        roll = self.rng.random()
        for edge, kind, codes in self._bands:
            if roll < edge:
                if kind in ("drop", "timeout"):
                    lost = self.rng.random() < self.config.lost_response_accept_rate
                    return Fault(kind, None, lost)
                return Fault(kind, self.rng.choice(codes))
        return None


def optional_code(value: object) -> int | None:
    """An error code from a control command: an integer, or None (JSON null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"error code must be an integer or null, got {value!r}")
    return value
