"""Registrars of the commands that live in their own modules; each adds its subparser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def registrars() -> list[Callable[[Any], None]]:
    from daemon import cli_daemon, cli_loadtest, cli_mock, cli_ops, cli_webhook

    return [
        cli_daemon.add_parser,
        cli_daemon.add_demo_parser,
        cli_mock.add_parser,
        cli_ops.add_parser,
        cli_webhook.add_parser,
        cli_loadtest.add_parser,
    ]
