"""Loading the configuration: `config.toml`, then `WA_SENDER_<SECTION>_<KEY>` variables and
systemd credentials, each value coerced to its key's type and checked (ranges, choices, values
that must parse)."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import phonenumbers

from daemon.config.bounds import check_bounds, shown
from daemon.config.sections import (
    CHOICES,
    FIELDS,
    SECRET_KEYS,
    SECTIONS,
    Config,
    Secret,
    field_types,
    key_value,
    section_of,
)
from daemon.core.caps import parse_categories, parse_rules
from daemon.core.windows import zone_named
from daemon.errors import ConfigError


def _coerce(section: str, key: str, value: Any, target: type, origin: str) -> Any:
    name = f"{section}.{key}"
    if target is tuple:  # a list of strings: a TOML array, or comma-separated text
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{origin}: {name} must be a list of strings, got {shown(value)}")
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
        types = field_types(SECTIONS[section])
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
        for key, target in field_types(factory).items():
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

    for (section, key), allowed in CHOICES.items():
        chosen = sections.get(section, {}).get(key)
        if chosen is not None and chosen not in allowed:
            where = origins.get(f"{section}.{key}", origin)
            raise ConfigError(
                f"{where}: {section}.{key} must be one of {', '.join(sorted(allowed))}, "
                f"got {chosen!r}"
            )
    built = {FIELDS.get(n, n): SECTIONS[n](**sections.get(n, {})) for n in SECTIONS}
    config = Config(**built)
    check_bounds(config, origins)
    _check_values(config, origins)
    return config


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
        FIELDS.get(name, name): dataclasses.replace(section_of(config, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(config, **changes)
