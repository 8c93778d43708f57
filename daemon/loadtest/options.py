"""What a load test runs: one frozen value built from the command line, checked once."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from daemon.config import EVENT_LOOPS
from daemon.core.caps import parse_rules
from daemon.core.windows import WindowError, parse_window
from daemon.errors import WaSenderError

SYSTEMS = (
    "wa-sender",
    "floor",
    "pgqueuer",
    "template-body",
    "no-replies",
    "no-window",
    "no-caps",
    "no-planning",
    "receipts-off",
)
# no-caps: wa-sender again without the frequency caps of --caps; no-planning: without both
# --window and --caps (their cost on the claim together).
# no-window: wa-sender again without the send window of --window (its cost on the claim).
# receipts-off: wa-sender again with no status webhooks (what --receipts costs, in the same
# run: the sends/s ratio, and PostgreSQL's CPU and WAL per receipt from the difference).
# no-replies: wa-sender again with the mock posting no inbound replies (what --reply-rate and
# --optout-rate are measured against, in the same run).
# template-body: wa-sender again, sending the body-only template (what --template rich is
# measured against, in the same run).
TEMPLATES = ("body", "rich", "rich-all")
UNLIMITED_RATE = 1_000_000.0  # the daemon's token bucket needs a number: high enough never to wait
DEFAULT_CONCURRENCY = 64
DEFAULT_MAX_CONNECTIONS = 100


class LoadtestError(WaSenderError):
    """The load test could not run as asked (bad options, a process that did not start)."""


@dataclass(frozen=True)
class LoadtestOptions:
    contacts: int = 10_000
    rate: float = 0.0  # the daemon's per-number limit; 0 = unthrottled
    burst: float | None = None  # default: a tenth of the rate (see daemon_burst)
    api_limit: float = 0.0  # the mock's per-number limit; 0 = none
    api_burst: float | None = None
    latency_ms: float = 0.0
    error_rate: float = 0.0
    receipts: bool = False
    reply_rate: float = 0.0  # inbound replies per accepted message (opt-outs included)
    optout_rate: float = 0.0  # STOP replies per accepted message
    mock_fast_lane: bool = True
    daemons: int = 1
    numbers: int = 1
    kill_every_s: float | None = None
    concurrency: int | None = None  # default: enough for rate x latency, at least 64
    max_connections: int | None = None
    systems: tuple[str, ...] = ("wa-sender",)
    template: str = "body"  # wa-sender's template: body, rich, or a JSON file (Meta's shape)
    window: str | None = None  # wa-sender's campaigns' send window (`campaign create --window`)
    caps: str | None = None  # the daemons' [limits] per_contact, comma-separated ("1/24h,3/7d")
    rounds: int = 1  # the systems run this many times, interleaved (noisy machines)
    timeout_s: float = 600.0
    settings: tuple[tuple[str, str], ...] = ()  # extra daemon config, ("sender.batch_size", "1000")
    probe: bool = True
    pgqueuer_batch_size: int | None = None
    pgqueuer_max_tasks: int | None = None  # max_concurrent_tasks; 0 = no cap
    seed: int | None = None
    json_path: Path | None = None
    plot_path: Path | None = None
    log_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.contacts < 1:
            raise LoadtestError("--contacts must be at least 1")
        if self.rate < 0 or self.api_limit < 0 or self.latency_ms < 0:
            raise LoadtestError("--rate, --api-limit and --latency-ms must not be negative")
        if not 0.0 <= self.error_rate <= 1.0:
            raise LoadtestError("--error-rate must be within [0, 1]")
        if self.daemons < 1 or self.numbers < 1:
            raise LoadtestError("--daemons and --numbers must be at least 1")
        if self.numbers > self.contacts:
            raise LoadtestError("--numbers cannot exceed --contacts")
        if self.kill_every_s is not None and self.kill_every_s <= 0:
            raise LoadtestError("--kill-every must be above 0 seconds")
        if self.concurrency is not None and self.concurrency < 1:
            raise LoadtestError("--concurrency must be at least 1")
        if self.rounds < 1:
            raise LoadtestError("--rounds must be at least 1")
        if self.timeout_s <= 0:
            raise LoadtestError("--timeout must be above 0 seconds")
        if (self.pgqueuer_batch_size or 1) < 1 or (self.pgqueuer_max_tasks or 0) < 0:
            raise LoadtestError("--pgqueuer-batch-size must be >= 1, --pgqueuer-max-tasks >= 0")
        if not 0.0 <= self.optout_rate <= self.reply_rate <= 1.0:
            raise LoadtestError("need 0 <= --optout-rate <= --reply-rate <= 1")
        if self.reply_rate > 0 and not self.receipts:
            raise LoadtestError("--reply-rate needs --receipts (replies go to the webhook)")
        if self.window is not None:
            try:
                parse_window(self.window)
            except WindowError as exc:
                raise LoadtestError(f"--window: {exc}") from None
        if "no-window" in self.systems and self.window is None:
            raise LoadtestError("--compare no-window needs --window")
        if self.caps is not None:
            try:
                parse_rules(self.caps.split(","))
            except ValueError as exc:
                raise LoadtestError(f"--caps: {exc}") from None
        if "no-caps" in self.systems and self.caps is None:
            raise LoadtestError("--compare no-caps needs --caps")
        if "no-planning" in self.systems and self.caps is None and self.window is None:
            raise LoadtestError("--compare no-planning needs --window or --caps")
        if "no-replies" in self.systems and self.reply_rate == 0:
            raise LoadtestError("--compare no-replies needs --reply-rate")
        if "receipts-off" in self.systems and not self.receipts:
            raise LoadtestError("--compare receipts-off needs --receipts")
        unknown = set(self.systems) - set(SYSTEMS)
        if unknown or not self.systems:
            raise LoadtestError(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
        if len(set(self.systems)) != len(self.systems):
            raise LoadtestError("a system is named twice")
        baselines = {"floor", "pgqueuer"} & set(self.systems)
        if self.template != "body" and baselines:
            raise LoadtestError(
                f"{' and '.join(sorted(baselines))} post the body-only template: compare"
                f" --template {self.template} with template-body"
            )
        if self.template not in TEMPLATES and not Path(self.template).is_file():
            raise LoadtestError(
                f"--template {self.template}: not body, rich, rich-all or a JSON file"
            )

    @property
    def event_loop(self) -> str:
        """The daemon's runtime.event_loop (`--set` may change it); the floor and PgQueuer
        run on the same loop."""
        return dict(self.settings).get("runtime.event_loop", "auto")

    @property
    def daemon_rate(self) -> float:
        return self.rate if self.rate > 0 else UNLIMITED_RATE

    @property
    def daemon_burst(self) -> float:
        """A tenth of the rate by default: below the API's own burst (which equals its limit),
        so scheduling jitter is absorbed by the API's bucket instead of turning into 429s."""
        if self.burst is not None:
            return self.burst
        if self.rate <= 0:
            return UNLIMITED_RATE
        return max(1.0, self.rate / 10.0)

    @property
    def effective_concurrency(self) -> int:
        """Requests in flight: at least 1.5 x rate x latency (when both are set), 64 minimum."""
        if self.concurrency is not None:
            return self.concurrency
        if self.rate > 0 and self.latency_ms > 0:
            needed = math.ceil(1.5 * self.rate * self.numbers * self.latency_ms / 1000.0)
            return max(DEFAULT_CONCURRENCY, needed)
        return DEFAULT_CONCURRENCY

    @property
    def effective_max_connections(self) -> int:
        if self.max_connections is not None:
            return self.max_connections
        return max(DEFAULT_MAX_CONNECTIONS, self.effective_concurrency)

    def describe(self) -> dict[str, object]:
        """The scenario as it goes into the JSON report."""
        return {
            "contacts": self.contacts,
            "rate": self.rate or None,
            "burst": self.daemon_burst if self.rate > 0 else None,
            "api_limit": self.api_limit or None,
            "api_burst": self.api_burst,
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "receipts": self.receipts,
            "reply_rate": self.reply_rate,
            "optout_rate": self.optout_rate,
            "mock_fast_lane": self.mock_fast_lane,
            "daemons": self.daemons,
            "numbers": self.numbers,
            "kill_every_s": self.kill_every_s,
            "concurrency": self.effective_concurrency,
            "max_connections": self.effective_max_connections,
            "systems": list(self.systems),
            "template": self.template,
            "window": self.window,
            "caps": self.caps,
            "rounds": self.rounds,
            "timeout_s": self.timeout_s,
            "settings": dict(self.settings),
            "probe": self.probe,
            "seed": self.seed,
        }


def measured_flags(options: LoadtestOptions, latency_path: Path, result_path: Path) -> list[str]:
    """What every baseline process shares with the daemon (connection limit, event loop), and
    where it writes its per-second latency and its result (see `add_measured_arguments`)."""
    return [
        "--max-connections",
        str(options.effective_max_connections),
        "--latency-out",
        str(latency_path),
        "--result",
        str(result_path),
        "--event-loop",
        options.event_loop,
    ]


def add_measured_arguments(parser: argparse.ArgumentParser) -> None:
    """The baseline process's side of `measured_flags` (plus its request timeout)."""
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--request-timeout-s", type=float, default=10.0)
    parser.add_argument("--latency-out", type=Path, default=None)
    parser.add_argument("--result", type=Path, default=None)
    parser.add_argument("--event-loop", default="auto", choices=EVENT_LOOPS)
