"""The `wa-sender` command line: the parser (built from each command group's `add_parser`)
and the dispatch; one clear line on stderr for every error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from daemon.cli import (
    campaign,
    contacts,
    demo,
    gdpr,
    loadtest,
    migrate,
    mock,
    report,
    run,
    suppression,
    templates,
    webhook,
)
from daemon.config import load_config
from daemon.errors import WaSenderError
from daemon.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each group module adds its commands."""
    parser = argparse.ArgumentParser(
        prog="wa-sender",
        description="Send WhatsApp template campaigns from PostgreSQL and track every contact.",
    )
    parser.add_argument(
        "--config", default="config.toml", help="config file (default ./config.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate.add_parser(commands)
    campaign.add_parser(commands)
    contacts.add_parser(commands)
    templates.add_parser(commands)
    suppression.add_parser(commands)
    run.add_parser(commands)
    demo.add_parser(commands)
    mock.add_parser(commands)
    report.add_parser(commands)
    gdpr.add_parser(commands)
    webhook.add_parser(commands)
    loadtest.add_parser(commands)
    return parser


def _config_path(raw: str, explicit: bool) -> Path | None:
    path = Path(raw)
    if not explicit and not path.exists():
        return None  # no ./config.toml: built-in defaults and the environment
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, load the config, run the command; the exit code (errors: one line on stderr)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    explicit = any(a == "--config" or a.startswith("--config=") for a in args_list)
    try:
        config = load_config(_config_path(args.config, explicit))
        configure_logging(config.logging.format, config.logging.level, stream=sys.stderr)
        code: int = args.handler(args, config)
        return code
    except WaSenderError as exc:
        print(f"wa-sender: error: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"wa-sender: error: database refused the operation: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wa-sender: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
