"""The `wa-sender` command line: the parser (built from each command group's `add_parser`)
and the dispatch; one clear line on stderr for every error, and a documented exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

import asyncpg

from daemon import version
from daemon.cli import (
    campaign,
    config_check,
    contacts,
    daemons,
    db,
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
from daemon.cli.common import Commands, config_path
from daemon.config import Config, load_config
from daemon.errors import (
    EXIT_CONFIG,
    EXIT_DATABASE_BLOCKED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    WaSenderError,
)
from daemon.logs import configure_logging

EXIT_CODES = (
    f"exit codes: 0 ok, {EXIT_ERROR} error, {EXIT_USAGE} usage (a wrong command line), "
    f"{EXIT_DATABASE_BLOCKED} database blocked writes (results spooled, replayed at the next "
    "start), "
    f"{EXIT_CONFIG} configuration (EX_CONFIG: systemd does not restart on it), "
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C)"
)
"""The epilog of every `--help`, and what README.md says."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2), and whose
    help ends with the exit codes (subcommands' parsers are made of this class too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_CODES)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message` as one line and exit with code 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each group module adds its commands."""
    parser = Parser(
        prog="wa-sender",
        description="Send WhatsApp template campaigns from PostgreSQL and track every contact.",
    )
    parser.add_argument(
        "--config", default="config.toml", help="config file (default ./config.toml)"
    )
    parser.add_argument(
        "--version", action="version", version=f"wa-sender {version()}", help="print the version"
    )
    commands = cast(
        Commands, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )

    migrate.add_parser(commands)
    campaign.add_parser(commands)
    contacts.add_parser(commands)
    templates.add_parser(commands)
    suppression.add_parser(commands)
    run.add_parser(commands)
    daemons.add_parser(commands)
    config_check.add_parser(commands)
    db.add_parser(commands)
    demo.add_parser(commands)
    mock.add_parser(commands)
    report.add_parser(commands)
    gdpr.add_parser(commands)
    webhook.add_parser(commands)
    loadtest.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, load the config, run the command; the exit code (errors: one line on stderr)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    args.config_explicit = any(a == "--config" or a.startswith("--config=") for a in args_list)
    try:
        # `config check` loads the file it is given itself.
        loads = getattr(args, "loads_config", True)
        config = load_config(config_path(args)) if loads else Config()
        configure_logging(config.logging.format, config.logging.level, stream=sys.stderr)
        code: int = args.handler(args, config)
        return code
    except WaSenderError as exc:
        print(f"wa-sender: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except asyncpg.PostgresError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"wa-sender: error: database refused the operation: {first}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("wa-sender: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
