"""`wa-sender config check [FILE]`: validate a config file and the environment without
starting anything (exit code 0, or 78 with one line naming the key)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from daemon.cli.common import Commands, config_path
from daemon.config import (
    BOUNDS,
    SECRET_KEYS,
    SECTIONS,
    Config,
    Secret,
    describe_bound,
    env_name,
    key_value,
    load_config,
)
from daemon.errors import ConfigError


def add_parser(commands: Commands) -> None:
    """Register `config check`."""
    group = commands.add_parser("config", help="check the configuration")
    sub = group.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "check",
        help="validate a config file and the WA_SENDER_* environment; start nothing",
        description="Load FILE (default: --config, else ./config.toml if it exists) and the "
        "environment as `wa-sender run` would, check every key and range, and say what `run` "
        "would still miss (secrets). Exit code 0 when valid, 78 with one line naming the key.",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="the config file to check")
    p.add_argument(
        "--show",
        action="store_true",
        help="print every key's effective value (secrets as set/unset), numeric ranges too",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_config_check, loads_config=False)


def cmd_config_check(args: argparse.Namespace, _default: Config) -> int:
    """`config check`: 0 when the file and the environment are valid (warnings for what `run`
    would refuse), else ConfigError (exit code 78)."""
    # The engine (aiohttp and all) only for this command: every other one starts faster.
    from daemon.engine.service import check_config_for_run
    from daemon.engine.web import check_webhook_config

    path = Path(args.file) if args.file else config_path(args)
    config = load_config(path)
    overrides = sorted(name for name in os.environ if name.startswith("WA_SENDER_"))
    warnings = []
    for check in (check_config_for_run, check_webhook_config):
        try:
            check(config)
        except ConfigError as exc:
            warnings.append(f"`wa-sender run` would refuse to start: {exc}")
    if args.json:
        document: dict[str, object] = {
            "ok": True,
            "file": str(path) if path else None,
            "environment_overrides": overrides,
            "warnings": warnings,
        }
        if args.show:
            document["values"] = _values(config)
        print(json.dumps(document, indent=2))
        return 0
    where = str(path) if path else "built-in defaults (no config file)"
    print(f"config ok: {where}, {len(overrides)} environment override(s)")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.show:
        for name, value in _values(config).items():
            bound = BOUNDS.get(name)
            shown = f"{name} = {value!r}"
            print(f"  {shown:<50} {describe_bound(bound) if bound else ''}".rstrip())
    return 0


def _values(config: Config) -> dict[str, object]:
    """Every key's value, secrets replaced by whether they are set."""
    values: dict[str, object] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            name = f"{section}.{f.name}"
            value = key_value(config, name)
            if (section, f.name) in SECRET_KEYS or isinstance(value, Secret):
                value = f"set ({env_name(section, f.name)} or credential)" if value else "unset"
            elif name == "database.url" and value:
                value = "set"
            values[name] = value
    return values
