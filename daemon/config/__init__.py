"""Configuration: `config.toml` sections, overridden by `WA_SENDER_<SECTION>_<KEY>` variables.

Secrets (access token, app secret, verify token) are never read from the file: only from the
environment or from systemd credentials (`$CREDENTIALS_DIRECTORY/<name>`). Every numeric key
has a range in `BOUNDS`, checked at load: a value outside it (or NaN, or infinite) is one
`ConfigError` line naming the key and its range, exit code 78.

The package: `sections` (the dataclasses and `Config`), `bounds` (every numeric key's range and
its check), `loading` (the file, the environment, credentials, coercion and the value checks).
Everything is imported from here.
"""

from daemon.config.bounds import (
    BOUNDS,
    DAY_S,
    Bound,
    Limit,
    check_bounds,
    describe_bound,
    describe_limit,
)
from daemon.config.loading import env_name, load_config, with_overrides
from daemon.config.sections import (
    EVENT_LOOPS,
    NO_SECRET,
    SECRET_KEYS,
    SECTIONS,
    Config,
    DatabaseConfig,
    ImportConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    OptOutConfig,
    PlanningConfig,
    RecoveryConfig,
    RuntimeConfig,
    Secret,
    SenderConfig,
    WebhookConfig,
    WhatsAppConfig,
    key_value,
    numeric_keys,
    section_of,
)

__all__ = [
    "BOUNDS",
    "DAY_S",
    "EVENT_LOOPS",
    "NO_SECRET",
    "SECRET_KEYS",
    "SECTIONS",
    "Bound",
    "Config",
    "DatabaseConfig",
    "ImportConfig",
    "Limit",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OptOutConfig",
    "PlanningConfig",
    "RecoveryConfig",
    "RuntimeConfig",
    "Secret",
    "SenderConfig",
    "WebhookConfig",
    "WhatsAppConfig",
    "check_bounds",
    "describe_bound",
    "describe_limit",
    "env_name",
    "key_value",
    "load_config",
    "numeric_keys",
    "section_of",
    "with_overrides",
]
