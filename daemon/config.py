"""Configuration: `config.toml` sections, overridden by `WA_SENDER_<SECTION>_<KEY>` variables.

Secrets (access token, app secret, verify token) are never read from the file: only from the
environment or from systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`). Every numeric key
has a range in `BOUNDS`, checked at load: a value outside it (or NaN, or infinite) is one
`ConfigError` line naming the key and its range, exit code 78.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import phonenumbers

from daemon.core.caps import DEFAULT_CATEGORIES, parse_categories, parse_rules
from daemon.core.optout import DEFAULT_KEYWORDS, DEFAULT_PAYLOADS
from daemon.core.windows import zone_named
from daemon.errors import ConfigError


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
_CHOICES: Mapping[tuple[str, str], frozenset[str]] = {
    ("recovery", "unknown_outcome"): frozenset({"reconcile", "error", "retry"}),
    ("logging", "format"): frozenset({"auto", "json", "console"}),
    ("logging", "level"): frozenset({"debug", "info", "warning", "error"}),
    ("runtime", "event_loop"): frozenset(EVENT_LOOPS),
    ("whatsapp", "marketing_endpoint"): frozenset({"cloud", "marketing_messages"}),
}

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


def _coerce(section: str, key: str, value: Any, target: type, origin: str) -> Any:
    name = f"{section}.{key}"
    if target is tuple:  # a list of strings: a TOML array, or comma-separated text
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{origin}: {name} must be a list of strings, got {_shown(value)}")
        return tuple(i.strip() for i in items if i.strip())
    if isinstance(value, str) and target is not str and target is not Secret:
        text = value.strip()
        try:
            if target is bool:
                if text.lower() in {"1", "true", "yes", "on"}:
                    return True
                if text.lower() in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(text)
            return target(text)
        except ValueError:
            raise ConfigError(
                f"{origin}: {name} must be {target.__name__}, got {value!r}"
            ) from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target is Secret and isinstance(value, str):
        return Secret(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(f"{origin}: {name} must be {target.__name__}, got {value!r}")
    return value


def _field_types(section_cls: type) -> dict[str, type]:
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


_FIELDS: Mapping[str, str] = {"import": "imports"}
"""The `Config` field of a section whose name Python cannot use as one."""


def section_of(config: Config, section: str) -> Any:
    """The dataclass of `section` ("import" -> config.imports)."""
    return getattr(config, _FIELDS.get(section, section))


def numeric_keys() -> dict[str, type]:
    """Every int and float key, "section.key" -> its type (what `BOUNDS` must cover)."""
    return {
        f"{section}.{key}": kind
        for section, cls in SECTIONS.items()
        for key, kind in _field_types(cls).items()
        if kind in (int, float)
    }


def _read_credential(name: str, environ: Mapping[str, str]) -> str | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides `section.key`."""
    return f"WA_SENDER_{section.upper()}_{key.upper()}"


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (optional when it does not exist and was not named), then the environment;
    ConfigError (one line, naming the key) for anything wrong, ranges included."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file is a directory: {path}") from None
        except PermissionError:
            raise ConfigError(f"config file cannot be read (permission denied): {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    origin = str(path) if path else "config"

    sections: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}  # "section.key" -> where its value came from
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        types = _field_types(SECTIONS[section])
        for key, value in values.items():
            if key not in types:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            if (section, key) in SECRET_KEYS:
                raise ConfigError(
                    f"{origin}: {section}.{key} is a secret and must not be in a file; "
                    f"set {env_name(section, key)} or a systemd credential named {key}"
                )
            sections.setdefault(section, {})[key] = _coerce(section, key, value, types[key], origin)
            origins[f"{section}.{key}"] = origin

    known_env = set()
    for section, factory in SECTIONS.items():
        for key, target in _field_types(factory).items():
            name = env_name(section, key)
            known_env.add(name)
            override: str | None = env.get(name)
            where = f"environment {name}"
            if override is None and (section, key) in SECRET_KEYS:
                override = _read_credential(key, env)
                where = f"credential {key}"
            if override is not None:
                sections.setdefault(section, {})[key] = _coerce(
                    section, key, override, target, where
                )
                origins[f"{section}.{key}"] = where
    for name in env:
        if name.startswith("WA_SENDER_") and name not in known_env:
            raise ConfigError(f"unknown environment override {name}")
    if env.get("DATABASE_URL"):
        sections.setdefault("database", {})["url"] = env["DATABASE_URL"]
        origins["database.url"] = "environment DATABASE_URL"

    for (section, key), allowed in _CHOICES.items():
        chosen = sections.get(section, {}).get(key)
        if chosen is not None and chosen not in allowed:
            where = origins.get(f"{section}.{key}", origin)
            raise ConfigError(
                f"{where}: {section}.{key} must be one of {', '.join(sorted(allowed))}, "
                f"got {chosen!r}"
            )
    built = {_FIELDS.get(n, n): SECTIONS[n](**sections.get(n, {})) for n in SECTIONS}
    config = Config(**built)
    check_bounds(config, origins)
    _check_values(config, origins)
    return config


def key_value(config: Config, name: str) -> Any:
    """The value of "section.key" in `config`."""
    section, _, key = name.partition(".")
    return getattr(section_of(config, section), key)


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
            f"{where}: {name} must be {kind} {describe_bound(bound, config)}, got {_shown(value)}"
        )


def _shown(value: object, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


_DIGITS = re.compile(r"[0-9]{1,32}")


def _check_values(config: Config, origins: Mapping[str, str]) -> None:
    def fail(name: str, message: str) -> None:
        raise ConfigError(f"{origins.get(name, 'config')}: {name} {message}")

    if not config.webhook.path.startswith("/"):
        fail("webhook.path", f"must start with '/', got {config.webhook.path!r}")
    number = config.whatsapp.phone_number_id
    if number and not _DIGITS.fullmatch(number):
        fail("whatsapp.phone_number_id", f"must be the number's id (digits only), got {number!r}")
    base_url = config.whatsapp.base_url
    if not base_url.startswith(("https://", "http://")):
        fail("whatsapp.base_url", f"must start with https:// or http://, got {base_url!r}")
    for name in ("webhook.host", "metrics.host"):
        if not key_value(config, name).strip():
            fail(name, "must not be empty")
    country = config.imports.default_country
    if country and country.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
        fail(
            "import.default_country", f"must be an ISO 3166 alpha-2 code (e.g. CZ), got {country!r}"
        )
    if zone_named(config.planning.time_zone) is None:
        fail(
            "planning.time_zone",
            f"must be an IANA time zone (e.g. Europe/Prague), got {config.planning.time_zone!r}",
        )
    for name, parse in (
        ("limits.per_contact", parse_rules),
        ("limits.per_contact_categories", parse_categories),
    ):
        try:
            parse(key_value(config, name))
        except ValueError as exc:
            fail(name, f"has a bad value: {exc}")
    webhook, metrics = config.webhook, config.metrics
    if (
        webhook.enabled
        and metrics.enabled
        and webhook.port == metrics.port
        and (webhook.host == metrics.host or {"0.0.0.0", "::"} & {webhook.host, metrics.host})
    ):
        fail("metrics.port", f"must differ from webhook.port ({webhook.port}) on the same host")


def with_overrides(config: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of `config` with some keys replaced (tests, demo, load test)."""
    changes = {
        _FIELDS.get(name, name): dataclasses.replace(section_of(config, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(config, **changes)
