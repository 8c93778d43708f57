"""The range of every numeric configuration key (`BOUNDS`), and the check `load_config` makes:
a value outside its range (or NaN, or infinite) is one `ConfigError` line naming the key and
its range, exit code 78."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from daemon.config.sections import Config, key_value
from daemon.errors import ConfigError

Limit = float | str
"""A bound: a number, or another key's name ("sender.max_rate_per_second") whose value it is."""


@dataclass(frozen=True)
class Bound:
    """The range of one numeric key: finite and from `low` to `high`, both included (either
    may name another key); `above` makes `low` excluded (a rate must be above 0)."""

    low: Limit
    high: Limit
    above: bool = False


DAY_S: Final = 86_400.0
# Every numeric key of every section, with its range: `load_config` refuses a value outside
# it (and NaN or infinity) with one line naming the key and the range, and a test fails for a
# numeric key missing here. A new key joins with one line.
BOUNDS: Mapping[str, Bound] = {
    "database.pool_min": Bound(0, "database.pool_max"),
    "database.pool_max": Bound(1, 1000),
    "database.write_timeout_s": Bound(0.1, 600),
    "database.blocked_exit_s": Bound(1, DAY_S),
    "whatsapp.request_timeout_s": Bound(0.1, 600),
    "whatsapp.max_connections": Bound(1, 100_000),
    "whatsapp.max_response_bytes": Bound(1024, 1 << 30),
    "sender.batch_size": Bound(1, 100_000),
    "sender.concurrency": Bound(1, 100_000),
    "sender.rate_per_second": Bound(0, "sender.max_rate_per_second", above=True),
    "sender.max_rate_per_second": Bound(1, 1_000_000),
    "sender.burst": Bound(0, 1_000_000),
    "sender.max_attempts": Bound(1, 100),
    "sender.retry_initial_s": Bound(0.001, DAY_S),
    "sender.retry_max_s": Bound("sender.retry_initial_s", 7 * DAY_S),
    "sender.flush_interval_s": Bound(0.001, 10),
    "sender.idle_poll_s": Bound(0.01, 3600),
    "sender.shutdown_timeout_s": Bound(0, 3600),
    "sender.breaker_threshold": Bound(0, 1_000_000),
    "sender.flagged_rate_factor": Bound(0, 1, above=True),
    "webhook.port": Bound(1, 65535),
    "webhook.max_body_bytes": Bound(1024, 1 << 30),
    "webhook.reconcile_batch": Bound(1, 100_000),
    "webhook.orphan_after_s": Bound(1, 30 * DAY_S),
    "webhook.max_connections": Bound(1, 65535),
    "webhook.max_pending_bytes": Bound("webhook.max_body_bytes", 1 << 30),
    "webhook.keepalive_timeout_s": Bound(1, 3600),
    "webhook.header_timeout_s": Bound(1, 300),
    "webhook.body_timeout_s": Bound(1, 300),
    "webhook.replay_window_s": Bound(3600, 30 * DAY_S),
    "recovery.lease_s": Bound(1, DAY_S),
    "recovery.grace_s": Bound(0, DAY_S),
    "recovery.max_unknown_outcomes": Bound(1, 1000),
    "limits.daily_unique_recipients": Bound(0, 1_000_000_000),
    "metrics.port": Bound(1, 65535),
}


def _limit(config: Config, limit: Limit) -> float:
    return float(key_value(config, limit)) if isinstance(limit, str) else float(limit)


def _number(value: float) -> str:
    """1000.0 -> "1000", 0.001 -> "0.001", 1073741824 -> "1073741824"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def describe_limit(limit: Limit, config: Config | None = None) -> str:
    """A bound as the documentation and the error lines show it: a number, or the key it
    names (with that key's value in `config`)."""
    if isinstance(limit, str):
        return limit if config is None else f"{limit} ({_number(_limit(config, limit))})"
    return _number(limit)


def describe_bound(bound: Bound, config: Config | None = None) -> str:
    """E.g. "from 1 to 65535", "above 0, up to sender.max_rate_per_second (1000)"."""
    low, high = describe_limit(bound.low, config), describe_limit(bound.high, config)
    return f"above {low}, up to {high}" if bound.above else f"from {low} to {high}"


def check_bounds(config: Config, origins: Mapping[str, str] | None = None) -> None:
    """Every key of `BOUNDS` is finite and within its range; else one ConfigError line (the
    origin, the key, its range, the value). Ranges of fixed numbers are checked first, so
    that a key another key's range names is itself known good when that one is checked."""
    fixed = [(n, b) for n, b in BOUNDS.items() if not isinstance(b.low, str)]
    fixed = [(n, b) for n, b in fixed if not isinstance(b.high, str)]
    relative = [(n, b) for n, b in BOUNDS.items() if (n, b) not in fixed]
    for name, bound in [*fixed, *relative]:
        value = key_value(config, name)
        low, high = _limit(config, bound.low), _limit(config, bound.high)
        finite = isinstance(value, int) or math.isfinite(value)  # a huge int has no float
        inside = finite and (value > low if bound.above else value >= low)
        if inside and value <= high:
            continue
        where = (origins or {}).get(name, "config")
        kind = "a whole number" if isinstance(value, int) else "a finite number"
        raise ConfigError(
            f"{where}: {name} must be {kind} {describe_bound(bound, config)}, got {shown(value)}"
        )


def shown(value: object, width: int = 40) -> str:
    """A value as an error line shows it: its repr, cut to `width` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
