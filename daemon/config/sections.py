"""The configuration's shape: the sections of `config.toml` as dataclasses, the whole `Config`,
which keys are secrets or choices, and how a "section.key" name finds its value."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.core.caps import DEFAULT_CATEGORIES
from daemon.core.optout import DEFAULT_KEYWORDS, DEFAULT_PAYLOADS


class Secret(str):
    """A string that never shows itself in repr() or logs."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


NO_SECRET = Secret("")


@dataclass(frozen=True)
class DatabaseConfig:
    """[database]: the PostgreSQL DSN, or where the embedded one keeps its data."""

    # A DSN may hold a password: kept out of repr() (a config in a traceback or a log line).
    url: str = field(default="", repr=False)
    # Where the embedded PostgreSQL keeps its data when no url is set ("" = per-user state dir).
    embedded_dir: str = ""
    pool_min: int = 2
    pool_max: int = 10
    # A result write that takes longer than this (a lock, a stalled server) counts as blocked.
    write_timeout_s: float = 10.0
    # Writes blocked (read-only, statement timeout, disk full, lock) this long in a row: the
    # daemon spools the results it holds and exits with code 75 (see README, "Exit codes").
    blocked_exit_s: float = 120.0
    # Where results the database would not take are spooled ("" = $STATE_DIRECTORY, else
    # the per-user state dir); replayed at the next start.
    spool_dir: str = ""


@dataclass(frozen=True)
class WhatsAppConfig:
    """[whatsapp]: the Cloud API endpoint, the default sending number and the secrets."""

    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    phone_number_id: str = ""
    access_token: Secret = NO_SECRET
    app_secret: Secret = NO_SECRET
    verify_token: Secret = NO_SECRET
    request_timeout_s: float = 10.0
    max_connections: int = 100
    # Bytes of a send's answer read at most; a longer answer is an unknown outcome (2xx) or
    # classified by its status alone, and its connection closed.
    max_response_bytes: int = 65536
    # The WhatsApp Business Account whose template catalogue `templates sync` reads.
    waba_id: str = ""
    # cloud: every template through /messages; marketing_messages: MARKETING templates
    # through the Marketing Messages API (/marketing_messages), the others through /messages.
    marketing_endpoint: str = "cloud"


@dataclass(frozen=True)
class SenderConfig:
    """[sender]: claiming, pacing and retrying."""

    batch_size: int = 500
    concurrency: int = 64
    rate_per_second: float = 80.0
    # The ceiling of rate_per_second: the Cloud API's top tier is 1,000 msg/s per number;
    # raise it only against the mock (load tests).
    max_rate_per_second: float = 1000.0
    # 0: automatic, a tenth of rate_per_second (at least 1); see core.ratelimit.burst_for.
    burst: float = 0.0
    max_attempts: int = 5
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    flush_interval_s: float = 0.05
    idle_poll_s: float = 5.0
    shutdown_timeout_s: float = 20.0
    # Identical per-contact refusals in a row about the request (100, 131008, 131009, 132000,
    # 132012, 132018, 135000) that pause a campaign; 0 = never.
    breaker_threshold: int = 20
    # A phone_number_quality_update FLAGGED or DOWNGRADE multiplies that number's rate for
    # MARKETING campaigns by this; UNFLAGGED or UPGRADE restore it.
    flagged_rate_factor: float = 0.5


@dataclass(frozen=True)
class WebhookConfig:
    """[webhook]: the receipts webhook server and the reconciler."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/webhook"
    max_body_bytes: int = 3 * 1024 * 1024
    reconcile_batch: int = 1000
    orphan_after_s: float = 3600.0
    # Ingress bounds (engine/ingress.py, engine/bodies.py): connections at once, bytes of
    # bodies held before their signature is known, and how long a connection may idle, take
    # over its headers, or take to send its body.
    max_connections: int = 512
    max_pending_bytes: int = 32 * 1024 * 1024
    keepalive_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 20.0
    # A signed body seen again within this window (Meta retries for 7 days) is acknowledged
    # without being stored again.
    replay_window_s: float = 7 * 24 * 3600.0
    # The webhook applies statuses to their contacts in the statement that stores them
    # (engine/group_commit.py). Off by default: measured, it wrote 40 % less WAL per status
    # but answered each POST later, so receipts drained 11-17 s after the last send instead
    # of 2-6 s, for no less PostgreSQL CPU (docs/performance.md).
    apply_on_ingest: bool = False


@dataclass(frozen=True)
class RecoveryConfig:
    """[recovery]: leases and what an unknown outcome becomes."""

    lease_s: float = 60.0
    unknown_outcome: str = "reconcile"
    grace_s: float = 30.0
    # Unknown outcomes a contact may have before it becomes Error; they do not use up
    # sender.max_attempts (a crash is not an API failure), this bounds them instead.
    max_unknown_outcomes: int = 10


@dataclass(frozen=True)
class OptOutConfig:
    """[optout]: inbound messages that put their sender on the suppression list."""

    # Comma-separated; a whole message matching one (case, accents, punctuation ignored).
    keywords: str = DEFAULT_KEYWORDS
    # Comma-separated quick-reply button payloads that mean "stop".
    payloads: str = DEFAULT_PAYLOADS


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: the portfolio messaging limit and the frequency caps per phone."""

    # Unique recipients per rolling 24 h for the business portfolio; 0 = unlimited.
    daily_unique_recipients: int = 0
    # Frequency caps per phone across campaigns, N/DURATION rules (core.caps), e.g.
    # ["1/24h", "3/7d"]; empty: no cap. In the environment: comma-separated.
    per_contact: tuple[str, ...] = ()
    # The template categories whose messages the caps count and hold back.
    per_contact_categories: tuple[str, ...] = DEFAULT_CATEGORIES


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: format and level."""

    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: Prometheus /metrics (and /healthz, /readyz) on an address of their own, so
    that the public reverse proxy exposes only the webhook."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8081


EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # runtime.event_loop, and the baselines' --event-loop


@dataclass(frozen=True)
class RuntimeConfig:
    """[runtime]: the event loop."""

    # auto: uvloop when it is installed (a dependency on Linux and macOS), else asyncio's own.
    event_loop: str = "auto"


@dataclass(frozen=True)
class ImportConfig:
    """[import]: contacts files."""

    # The country (ISO 3166 alpha-2, e.g. "CZ") national numbers are read in when neither
    # `contacts import --default-country` nor the campaign names one. Empty: such numbers are
    # invalid records (missing_country_code), never guessed.
    default_country: str = ""
    # Meta has not delivered MARKETING templates to US (+1, region US) numbers since
    # 2025-04-01: importing them into a marketing campaign makes invalid records
    # (marketing_blocked_country). Canada and the other +1 regions are not blocked.
    block_us_marketing: bool = True


@dataclass(frozen=True)
class PlanningConfig:
    """[planning]: scheduled starts, send windows, finish-by (issue 19)."""

    # The IANA zone of times written without an offset (`campaign start --at`, `--finish-by`),
    # and of contacts whose number tells no zone when their campaign has no `--window-zone`.
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Config:
    """The whole configuration, one frozen section per table of config.toml."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    whatsapp: WhatsAppConfig = field(default_factory=WhatsAppConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    optout: OptOutConfig = field(default_factory=OptOutConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # [import] ("import" is a Python keyword: the section's field is named imports).
    imports: ImportConfig = field(default_factory=ImportConfig)
    planning: PlanningConfig = field(default_factory=PlanningConfig)


SECRET_KEYS = frozenset(
    {("whatsapp", "access_token"), ("whatsapp", "app_secret"), ("whatsapp", "verify_token")}
)
CHOICES: Mapping[tuple[str, str], frozenset[str]] = {
    ("recovery", "unknown_outcome"): frozenset({"reconcile", "error", "retry"}),
    ("logging", "format"): frozenset({"auto", "json", "console"}),
    ("logging", "level"): frozenset({"debug", "info", "warning", "error"}),
    ("runtime", "event_loop"): frozenset(EVENT_LOOPS),
    ("whatsapp", "marketing_endpoint"): frozenset({"cloud", "marketing_messages"}),
}


def field_types(section_cls: type) -> dict[str, type]:
    """Each key of a section's dataclass and the type its values are coerced to."""
    hints = {
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
        "Secret": Secret,
        "tuple[str, ...]": tuple,
    }
    return {f.name: hints[str(f.type)] for f in dataclasses.fields(section_cls)}


SECTIONS: Mapping[str, type] = {
    "database": DatabaseConfig,
    "whatsapp": WhatsAppConfig,
    "sender": SenderConfig,
    "webhook": WebhookConfig,
    "recovery": RecoveryConfig,
    "limits": LimitsConfig,
    "optout": OptOutConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "runtime": RuntimeConfig,
    "import": ImportConfig,
    "planning": PlanningConfig,
}
"""Each table of config.toml and the dataclass it fills (the fields of `Config`)."""


FIELDS: Mapping[str, str] = {"import": "imports"}
"""The `Config` field of a section whose name Python cannot use as one."""


def section_of(config: Config, section: str) -> Any:
    """The dataclass of `section` ("import" -> config.imports)."""
    return getattr(config, FIELDS.get(section, section))


def key_value(config: Config, name: str) -> Any:
    """The value of "section.key" in `config`."""
    section, _, key = name.partition(".")
    return getattr(section_of(config, section), key)


def numeric_keys() -> dict[str, type]:
    """Every int and float key, "section.key" -> its type (what `BOUNDS` must cover)."""
    return {
        f"{section}.{key}": kind
        for section, cls in SECTIONS.items()
        for key, kind in field_types(cls).items()
        if kind in (int, float)
    }
