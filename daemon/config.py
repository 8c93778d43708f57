"""Configuration: `config.toml` sections, overridden by `WA_SENDER_<SECTION>_<KEY>` variables.

Secrets (access token, app secret, verify token) are never read from the file: only from the
environment or from systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError


class Secret(str):
    """A string that never shows itself in repr() or logs."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


NO_SECRET = Secret("")


@dataclass(frozen=True)
class DatabaseConfig:
    # A DSN may hold a password: kept out of repr() (a config in a traceback or a log line).
    url: str = field(default="", repr=False)
    # Where the embedded PostgreSQL keeps its data when no url is set ("" = per-user state dir).
    embedded_dir: str = ""
    pool_min: int = 2
    pool_max: int = 10


@dataclass(frozen=True)
class WhatsAppConfig:
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    phone_number_id: str = ""
    access_token: Secret = NO_SECRET
    app_secret: Secret = NO_SECRET
    verify_token: Secret = NO_SECRET
    request_timeout_s: float = 10.0
    max_connections: int = 100
    # The WhatsApp Business Account whose template catalogue `templates sync` reads.
    waba_id: str = ""
    # cloud: every template through /messages; marketing_messages: MARKETING templates
    # through the Marketing Messages API (/marketing_messages), the others through /messages.
    marketing_endpoint: str = "cloud"


@dataclass(frozen=True)
class SenderConfig:
    batch_size: int = 500
    concurrency: int = 64
    rate_per_second: float = 80.0
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


@dataclass(frozen=True)
class WebhookConfig:
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


@dataclass(frozen=True)
class RecoveryConfig:
    lease_s: float = 60.0
    unknown_outcome: str = "reconcile"
    grace_s: float = 30.0
    # Unknown outcomes a contact may have before it becomes Error; they do not use up
    # sender.max_attempts (a crash is not an API failure), this bounds them instead.
    max_unknown_outcomes: int = 10


@dataclass(frozen=True)
class LimitsConfig:
    # Unique recipients per rolling 24 h for the business portfolio; 0 = unlimited.
    daily_unique_recipients: int = 0


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True


EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # runtime.event_loop, and the baselines' --event-loop


@dataclass(frozen=True)
class RuntimeConfig:
    # auto: uvloop when it is installed (a dependency on Linux and macOS), else asyncio's own.
    event_loop: str = "auto"


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    whatsapp: WhatsAppConfig = field(default_factory=WhatsAppConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


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


def _coerce(section: str, key: str, value: Any, target: type, origin: str) -> Any:
    name = f"{section}.{key}"
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
    hints = {"str": str, "int": int, "float": float, "bool": bool, "Secret": Secret}
    return {f.name: hints[str(f.type)] for f in dataclasses.fields(section_cls)}


def _section_class(f: dataclasses.Field[Any]) -> type:
    assert isinstance(f.type, str)
    return {
        cls.__name__: cls
        for cls in (
            DatabaseConfig,
            WhatsAppConfig,
            SenderConfig,
            WebhookConfig,
            RecoveryConfig,
            LimitsConfig,
            LoggingConfig,
            MetricsConfig,
            RuntimeConfig,
        )
    }[f.type]


def _read_credential(name: str, environ: Mapping[str, str]) -> str | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (optional when it does not exist and was not named), then the environment."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    origin = str(path) if path else "config"

    sections: dict[str, dict[str, Any]] = {}
    section_types: dict[str, type] = {f.name: _section_class(f) for f in dataclasses.fields(Config)}
    for section, values in raw.items():
        if section not in section_types:
            raise ConfigError(f"{origin}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        types = _field_types(section_types[section])
        for key, value in values.items():
            if key not in types:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            if (section, key) in SECRET_KEYS:
                env_name = f"WA_SENDER_{section.upper()}_{key.upper()}"
                raise ConfigError(
                    f"{origin}: {section}.{key} is a secret and must not be in a file; "
                    f"set {env_name} or a systemd credential named {key}"
                )
            sections.setdefault(section, {})[key] = _coerce(section, key, value, types[key], origin)

    prefix = "WA_SENDER_"
    known_env = set()
    for section, factory in section_types.items():
        for key, target in _field_types(factory).items():
            env_name = f"{prefix}{section.upper()}_{key.upper()}"
            known_env.add(env_name)
            override: str | None = env.get(env_name)
            if override is None and (section, key) in SECRET_KEYS:
                override = _read_credential(key, env)
            if override is not None:
                sections.setdefault(section, {})[key] = _coerce(
                    section, key, override, target, f"environment {env_name}"
                )
    for name in env:
        if name.startswith(prefix) and name not in known_env:
            raise ConfigError(f"unknown environment override {name}")
    if env.get("DATABASE_URL"):
        sections.setdefault("database", {})["url"] = env["DATABASE_URL"]

    for (section, key), allowed in _CHOICES.items():
        chosen = sections.get(section, {}).get(key)
        if chosen is not None and chosen not in allowed:
            raise ConfigError(
                f"{section}.{key} must be one of {', '.join(sorted(allowed))}, got {chosen!r}"
            )
    built = {name: section_types[name](**sections.get(name, {})) for name in section_types}
    config = Config(**built)
    _check_ranges(config)
    return config


def _check_ranges(config: Config) -> None:
    positive = {
        "sender.batch_size": config.sender.batch_size,
        "sender.concurrency": config.sender.concurrency,
        "sender.rate_per_second": config.sender.rate_per_second,
        "sender.max_attempts": config.sender.max_attempts,
        "recovery.lease_s": config.recovery.lease_s,
        "recovery.max_unknown_outcomes": config.recovery.max_unknown_outcomes,
        "whatsapp.request_timeout_s": config.whatsapp.request_timeout_s,
        "webhook.max_body_bytes": config.webhook.max_body_bytes,
        "webhook.max_connections": config.webhook.max_connections,
        "webhook.max_pending_bytes": config.webhook.max_pending_bytes,
        "webhook.keepalive_timeout_s": config.webhook.keepalive_timeout_s,
        "webhook.header_timeout_s": config.webhook.header_timeout_s,
        "webhook.body_timeout_s": config.webhook.body_timeout_s,
        "webhook.replay_window_s": config.webhook.replay_window_s,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {value}")
    if config.sender.breaker_threshold < 0:
        raise ConfigError("sender.breaker_threshold must be 0 (never) or more")
    if config.sender.burst < 0:
        raise ConfigError(f"sender.burst must be 0 (automatic) or more, got {config.sender.burst}")
    if config.webhook.max_pending_bytes < config.webhook.max_body_bytes:
        raise ConfigError(
            "webhook.max_pending_bytes must be at least webhook.max_body_bytes "
            f"({config.webhook.max_body_bytes}), got {config.webhook.max_pending_bytes}"
        )
    if config.limits.daily_unique_recipients < 0:
        raise ConfigError("limits.daily_unique_recipients must be 0 (unlimited) or more")
    if not config.webhook.path.startswith("/"):
        raise ConfigError(f"webhook.path must start with '/', got {config.webhook.path!r}")


def with_overrides(config: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of `config` with some keys replaced (tests, demo, load test)."""
    changes = {
        name: dataclasses.replace(getattr(config, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(config, **changes)
