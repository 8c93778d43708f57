"""Configuration of the mock Cloud API: faults, throughput limit, receipts (all frozen values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_TOKEN = "test-token"
DEFAULT_TRANSIENT_CODES = (1, 2, 131000, 131016, 133004)
DEFAULT_PERMANENT_CODES = (131026, 130472, 131050, 130403)
DEFAULT_FATAL_CODES = (190, 131042, 132001, 132015, 368)
# 131049 is left out: a failed status with it is retried after 24 h (core/failed_status.py),
# which would hold a load test's campaign open for a day. Ask for it with failed_codes.
DEFAULT_FAILED_CODES = (131050, 130472, 131026)

DelayRange = tuple[float, float]


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value}")


def _check_range(name: str, value: DelayRange) -> None:
    low, high = value
    if low < 0 or high < low:
        raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {value}")


@dataclass(frozen=True)
class FaultConfig:
    """Latency and errors injected into send requests, each at a probability per request.

    The five error-kind rates (transient, permanent, fatal, timeout, drop) are exclusive
    outcomes of one draw, so they must add up to at most 1.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # uniform: +U(0, jitter); exponential: +Exp(mean=jitter), a long tail like real networks.
    jitter: Literal["uniform", "exponential"] = "uniform"
    transient_rate: float = 0.0
    transient_codes: tuple[int, ...] = DEFAULT_TRANSIENT_CODES
    permanent_rate: float = 0.0
    permanent_codes: tuple[int, ...] = DEFAULT_PERMANENT_CODES
    fatal_rate: float = 0.0
    fatal_codes: tuple[int, ...] = DEFAULT_FATAL_CODES
    timeout_rate: float = 0.0
    # A timed-out request is held this long, then its connection is closed without an answer.
    hang_s: float = 30.0
    drop_rate: float = 0.0
    # Share of timeouts/drops that happen after the message was accepted (the response is
    # lost but the message goes out and its receipts follow), to exercise unknown outcomes.
    lost_response_accept_rate: float = 0.0
    # Deterministic triggers: recipient ``to`` (as sent) -> error code, on every request.
    forced_errors: Mapping[str, int] = field(default_factory=dict)
    # Odd answers (mockapi.oddities): recipient ``to`` -> kind, on its first request only.
    odd_answers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_s < 0:
            raise ValueError("latency_ms, jitter_ms and hang_s must not be negative")
        rates = {
            "transient_rate": self.transient_rate,
            "permanent_rate": self.permanent_rate,
            "fatal_rate": self.fatal_rate,
            "timeout_rate": self.timeout_rate,
            "drop_rate": self.drop_rate,
        }
        for name, value in rates.items():
            _check_rate(name, value)
        _check_rate("lost_response_accept_rate", self.lost_response_accept_rate)
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        for name, rate, codes in (
            ("transient_codes", self.transient_rate, self.transient_codes),
            ("permanent_codes", self.permanent_rate, self.permanent_codes),
            ("fatal_codes", self.fatal_rate, self.fatal_codes),
        ):
            if rate > 0 and not codes:
                raise ValueError(f"{name} must not be empty when its rate is above 0")

    @property
    def error_rate(self) -> float:
        """The share of requests that get any fault (the rates are exclusive)."""
        return (
            self.transient_rate
            + self.permanent_rate
            + self.fatal_rate
            + self.timeout_rate
            + self.drop_rate
        )


# The ReceiptConfig fields that are probabilities (checked here, exposed as CLI flags).
RECEIPT_RATE_FIELDS: tuple[str, ...] = (
    "delivered_rate",
    "read_rate",
    "read_without_delivered_rate",
    "failed_rate",
    "duplicate_rate",
    "reorder_rate",
    "split_rate",
    "reply_rate",
    "optout_rate",
)


@dataclass(frozen=True)
class ReceiptConfig:
    """Status webhooks posted back for accepted messages.

    Per accepted message: ``failed`` alone with probability ``failed_rate`` (an asynchronous
    failure, code drawn from ``failed_codes``); otherwise ``sent``, then ``delivered`` with
    probability ``delivered_rate``, then ``read`` with probability ``read_rate`` (given
    delivered), plus ``read_without_delivered_rate`` for a read that skips delivered (the user
    had the chat open). Each status waits its delay range after the previous one.
    """

    enabled: bool = False
    webhook_url: str | None = None
    app_secret: str = field(default="", repr=False)
    waba_id: str = "102290129340398"
    display_phone_number: str = "15550783881"
    delivered_rate: float = 0.95
    read_rate: float = 0.6
    read_without_delivered_rate: float = 0.0
    failed_rate: float = 0.0
    failed_codes: tuple[int, ...] = DEFAULT_FAILED_CODES
    sent_delay_s: DelayRange = (0.01, 0.1)
    delivered_delay_s: DelayRange = (0.05, 0.5)
    read_delay_s: DelayRange = (0.1, 1.0)
    failed_delay_s: DelayRange = (0.05, 0.5)
    # A duplicate is the same status posted again, within duplicate_delay_s of the original.
    duplicate_rate: float = 0.0
    duplicate_delay_s: DelayRange = (0.0, 0.5)
    # Per message: swap the times of two consecutive statuses (read before delivered, ...).
    reorder_rate: float = 0.0
    # Per POST: spread its statuses over several entries/changes instead of one.
    split_rate: float = 0.0
    batch_size: int = 100
    flush_interval_s: float = 0.05
    post_concurrency: int = 8
    post_timeout_s: float = 10.0
    # Meta retries a failed POST "immediately, then a few more times with decreasing
    # frequency"; we keep it bounded and short: exponential from retry_initial_s.
    max_attempts: int = 5
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    # conversation/pricing objects as v23 webhooks carry them (v24 drops conversation).
    include_pricing: bool = True
    pricing_category: str = "marketing"
    # v24 webhooks: no conversation object (pricing stays); user_id (business-scoped user id)
    # in the statuses' contacts[].
    include_conversation: bool = True
    include_user_id: bool = True
    # Inbound replies (mockapi/inbound.py): per message, a reply with probability reply_rate
    # (opt-outs included), of which optout_rate of all messages say STOP (half as a text in one
    # of several languages, half as the STOP_PROMOTIONS quick-reply button), reply_delay_s
    # after its last status.
    reply_rate: float = 0.0
    optout_rate: float = 0.0
    reply_delay_s: DelayRange = (0.1, 1.0)

    def __post_init__(self) -> None:
        if self.enabled and not self.webhook_url:
            raise ValueError("receipts need a webhook_url")
        if self.enabled and not self.app_secret:
            raise ValueError("receipts need an app_secret to sign webhooks")
        for name in RECEIPT_RATE_FIELDS:
            _check_rate(name, getattr(self, name))
        for name in (
            "sent_delay_s",
            "delivered_delay_s",
            "read_delay_s",
            "failed_delay_s",
            "duplicate_delay_s",
            "reply_delay_s",
        ):
            _check_range(name, getattr(self, name))
        if self.optout_rate > self.reply_rate:
            raise ValueError("optout_rate counts among the replies: at most reply_rate")
        if self.failed_rate > 0 and not self.failed_codes:
            raise ValueError("failed_codes must not be empty when failed_rate is above 0")
        if self.batch_size < 1 or self.post_concurrency < 1 or self.max_attempts < 1:
            raise ValueError("batch_size, post_concurrency and max_attempts must be at least 1")
        if self.flush_interval_s < 0 or self.post_timeout_s <= 0:
            raise ValueError("flush_interval_s must be >= 0 and post_timeout_s > 0")
        if self.retry_initial_s < 0 or self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry delays must satisfy 0 <= retry_initial_s <= retry_max_s")


@dataclass(frozen=True)
class MockConfig:
    """Everything the mock Cloud API does; the defaults are a fault-free, unlimited API."""

    token: str = field(default=DEFAULT_TOKEN, repr=False)
    validate: bool = True
    # Serve well-formed sends straight from the socket (mockapi.fastlane); off: aiohttp serves all.
    fast_lane: bool = True
    # Messages per second per phone_number_id; None or 0 means unlimited.
    limit_per_second: float | None = None
    # Token bucket size; None means equal to limit_per_second.
    limit_burst: float | None = None
    # token_bucket: rate + burst like the daemon's limiter; sliding_window: at most
    # limit_per_second accepted in any trailing second (stricter).
    limit_mode: Literal["token_bucket", "sliding_window"] = "token_bucket"
    # Template name -> number of body parameters it takes; a mismatch answers 132000.
    template_param_counts: Mapping[str, int] = field(default_factory=dict)
    # When set, any other template name answers 132001.
    known_templates: frozenset[str] | None = None
    # The template catalogue (Meta's message_templates entries) served by GET
    # /{waba_id}/message_templates and checked against every send that names one of them;
    # None: the built-in samples (mockapi.catalogue). strict_templates: names it does not
    # know answer 132001 (on with --templates FILE).
    templates: tuple[Mapping[str, Any], ...] | None = None
    strict_templates: bool = False
    # The sending numbers that exist; None: any. Others answer 400, code 100, subcode 33.
    phone_number_ids: frozenset[str] | None = None
    # Keep every accepted body as sent (MockState.bodies): tests read them back.
    record_bodies: bool = False
    seed: int | None = None
    # Log every request outcome (debug); off by default because it costs throughput.
    log_requests: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    receipts: ReceiptConfig = field(default_factory=ReceiptConfig)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("token must not be empty")
        if self.limit_per_second is not None and self.limit_per_second < 0:
            raise ValueError("limit_per_second must not be negative")
        if self.limit_burst is not None and self.limit_burst < 1:
            raise ValueError("limit_burst must be at least 1")

    @property
    def waba_id(self) -> str:
        """The WhatsApp Business Account the mock serves (its catalogue, its webhooks)."""
        return self.receipts.waba_id

    @property
    def limited(self) -> bool:
        """Whether a per-number throughput limit (130429) applies."""
        return bool(self.limit_per_second)
