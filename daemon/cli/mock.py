"""``wa-sender mock-api``: the mock WhatsApp Cloud API on its own."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from daemon.cli.common import Commands
from daemon.config import EVENT_LOOPS
from daemon.core.templates import TemplateError, parse_catalogue
from daemon.errors import ConfigError
from daemon.mockapi.config import (
    DEFAULT_TOKEN,
    RECEIPT_RATE_FIELDS,
    DelayRange,
    FaultConfig,
    MockConfig,
    ReceiptConfig,
)

TOKEN_ENV = "WA_SENDER_WHATSAPP_ACCESS_TOKEN"
APP_SECRET_ENV = "WA_SENDER_WHATSAPP_APP_SECRET"
DEFAULT_PORT = 8090

_RECEIPT_DEFAULTS = {f.name: f.default for f in fields(ReceiptConfig)}
_RATE_HELP = {
    "delivered_rate": "share of accepted messages that get a delivered status",
    "read_rate": "share of delivered messages that get a read status",
    "read_without_delivered_rate": "share of reads posted without a delivered first",
    "failed_rate": "share of accepted messages that get a failed status instead",
    "duplicate_rate": "share of statuses posted twice",
    "reorder_rate": "share of statuses posted out of order",
    "split_rate": "share of statuses posted in a POST of their own",
    "reply_rate": "share of accepted messages answered by an inbound reply (opt-outs included)",
    "optout_rate": "share of accepted messages answered STOP (a text or the STOP button)",
}


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def _codes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"{text!r} is not a comma-separated list of codes"
        raise argparse.ArgumentTypeError(message) from None


def _delay(text: str) -> DelayRange:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN,MAX in seconds") from None
    return (low, high)


def _pair(text: str) -> tuple[str, int]:
    key, sep, value = text.rpartition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER")
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=NUMBER") from None


def add_parser(commands: Commands) -> None:
    """Register the ``mock-api`` subcommand (defaults: ``func=run``, ``handler=handle``)."""
    parser = commands.add_parser(
        "mock-api",
        help="run the mock WhatsApp Cloud API",
        description=(
            "Serve a mock of the WhatsApp Cloud API messages endpoint with injectable latency,"
            " errors, a per-number throughput limit and signed status webhooks. Harness"
            " endpoints: GET /_mock/stats, GET /_mock/messages, POST /_mock/control."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run, handler=handle)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The mock's flags, in groups (server, throughput, faults, receipts)."""
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="the address to serve on")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    server.add_argument(
        "--token",
        default=None,
        help=f"accepted bearer token (else env {TOKEN_ENV}, else {DEFAULT_TOKEN!r})",
    )
    server.add_argument("--no-validate", action="store_true", help="skip schema validation")
    server.add_argument(
        "--no-fast-lane",
        action="store_true",
        help="serve every request through aiohttp (costs the mock about twice the CPU a send)",
    )
    server.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="auto: uvloop when installed",
    )
    server.add_argument("--seed", type=int, default=None, help="seed of every random draw")
    server.add_argument("--log-requests", action="store_true", help="log each request outcome")
    server.add_argument(
        "--known-template",
        action="append",
        default=[],
        metavar="NAME",
        help="template names that exist (repeatable); others answer 132001",
    )
    server.add_argument(
        "--templates",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve this template catalogue (JSON, Meta's message_templates shape) instead of"
        " the built-in samples; sends of templates it lacks answer 132001",
    )
    server.add_argument(
        "--phone-number-id",
        dest="phone_number_ids",
        action="append",
        default=[],
        metavar="ID",
        help="the sending numbers that exist (repeatable); others answer 400, code 100,"
        " subcode 33 (default: any)",
    )
    server.add_argument(
        "--expect-params",
        action="append",
        type=_pair,
        default=[],
        metavar="TEMPLATE=N",
        help="body parameter count of a template (repeatable); a mismatch answers 132000",
    )

    limit = parser.add_argument_group("throughput")
    limit.add_argument("--limit", type=float, default=None, help="msg/s per phone number id")
    limit.add_argument("--burst", type=float, default=None, help="token bucket size")
    limit.add_argument(
        "--limit-mode",
        choices=("token_bucket", "sliding_window"),
        default="token_bucket",
        help="how the per-number limit counts requests",
    )

    faults = parser.add_argument_group("faults (probabilities per request)")
    faults.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every answer, milliseconds"
    )
    faults.add_argument(
        "--jitter-ms", type=float, default=0.0, help="random extra latency, milliseconds"
    )
    faults.add_argument(
        "--jitter",
        choices=("uniform", "exponential"),
        default="uniform",
        help="the extra latency's distribution (exponential: a long tail)",
    )
    faults.add_argument(
        "--error-rate",
        "--transient-rate",
        dest="transient_rate",
        type=_rate,
        default=0.0,
        help="share of sends answered with a transient error",
    )
    faults.add_argument(
        "--transient-codes",
        type=_codes,
        default=FaultConfig.transient_codes,
        help="comma-separated codes the transient errors carry",
    )
    faults.add_argument(
        "--permanent-rate", type=_rate, default=0.0, help="share refused for the recipient"
    )
    faults.add_argument(
        "--permanent-codes",
        type=_codes,
        default=FaultConfig.permanent_codes,
        help="comma-separated codes of the permanent refusals",
    )
    faults.add_argument(
        "--fatal-rate", type=_rate, default=0.0, help="share answered with a campaign-fatal error"
    )
    faults.add_argument(
        "--fatal-codes",
        type=_codes,
        default=FaultConfig.fatal_codes,
        help="comma-separated codes of the campaign-fatal errors",
    )
    faults.add_argument(
        "--timeout-rate", type=_rate, default=0.0, help="share left unanswered for --hang-s"
    )
    faults.add_argument(
        "--hang-s",
        type=float,
        default=FaultConfig.hang_s,
        help="how long an unanswered send hangs, seconds",
    )
    faults.add_argument(
        "--drop-rate", type=_rate, default=0.0, help="share whose connection is reset"
    )
    faults.add_argument(
        "--lost-response-accept-rate",
        type=_rate,
        default=0.0,
        help="share of timeouts/drops whose message was accepted anyway",
    )
    faults.add_argument(
        "--force-error",
        action="append",
        type=_pair,
        default=[],
        metavar="TO=CODE",
        help="always answer sends to TO with error CODE (repeatable)",
    )

    receipts = parser.add_argument_group("receipts (status webhooks)")
    receipts.add_argument("--receipts", action="store_true", help="post status webhooks")
    receipts.add_argument(
        "--webhook-url", default=None, help="where to post them (the daemon's webhook)"
    )
    receipts.add_argument(
        "--app-secret",
        default=None,
        help=f"signs the webhooks (else env {APP_SECRET_ENV})",
    )
    for name in RECEIPT_RATE_FIELDS:
        receipts.add_argument(
            "--" + name.replace("_", "-"),
            type=_rate,
            default=_RECEIPT_DEFAULTS[name],
            help=_RATE_HELP[name],
        )
    receipts.add_argument(
        "--failed-codes",
        type=_codes,
        default=ReceiptConfig.failed_codes,
        help="comma-separated codes of the failed statuses",
    )
    for name in ("sent_delay_s", "delivered_delay_s", "read_delay_s", "failed_delay_s"):
        receipts.add_argument(
            "--" + name.removesuffix("_s").replace("_", "-"),
            dest=name,
            type=_delay,
            default=_RECEIPT_DEFAULTS[name],
            metavar="MIN,MAX",
            help="seconds after the previous status",
        )
    receipts.add_argument(
        "--batch-size",
        type=int,
        default=ReceiptConfig.batch_size,
        help="statuses per webhook POST, at most",
    )
    receipts.add_argument(
        "--flush-interval-ms",
        type=float,
        default=ReceiptConfig.flush_interval_s * 1000,
        help="how often a partial batch is posted, milliseconds",
    )
    receipts.add_argument(
        "--waba-id", default=ReceiptConfig.waba_id, help="the WABA id the webhooks name"
    )


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The MockConfig the parsed flags describe (ValueError when they contradict)."""
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        jitter=args.jitter,
        transient_rate=args.transient_rate,
        transient_codes=args.transient_codes,
        permanent_rate=args.permanent_rate,
        permanent_codes=args.permanent_codes,
        fatal_rate=args.fatal_rate,
        fatal_codes=args.fatal_codes,
        timeout_rate=args.timeout_rate,
        hang_s=args.hang_s,
        drop_rate=args.drop_rate,
        lost_response_accept_rate=args.lost_response_accept_rate,
        forced_errors=dict(args.force_error),
    )
    receipts = ReceiptConfig(
        enabled=args.receipts,
        webhook_url=args.webhook_url,
        app_secret=args.app_secret or os.environ.get(APP_SECRET_ENV, ""),
        waba_id=args.waba_id,
        delivered_rate=args.delivered_rate,
        read_rate=args.read_rate,
        read_without_delivered_rate=args.read_without_delivered_rate,
        failed_rate=args.failed_rate,
        failed_codes=args.failed_codes,
        sent_delay_s=args.sent_delay_s,
        delivered_delay_s=args.delivered_delay_s,
        read_delay_s=args.read_delay_s,
        failed_delay_s=args.failed_delay_s,
        duplicate_rate=args.duplicate_rate,
        reorder_rate=args.reorder_rate,
        split_rate=args.split_rate,
        reply_rate=args.reply_rate,
        optout_rate=args.optout_rate,
        batch_size=args.batch_size,
        flush_interval_s=args.flush_interval_ms / 1000.0,
    )
    templates = read_templates(args.templates) if args.templates else None
    return MockConfig(
        templates=templates,
        strict_templates=templates is not None,
        phone_number_ids=frozenset(args.phone_number_ids) if args.phone_number_ids else None,
        token=args.token or os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN,
        validate=not args.no_validate,
        fast_lane=not args.no_fast_lane,
        limit_per_second=args.limit,
        limit_burst=args.burst,
        limit_mode=args.limit_mode,
        template_param_counts=dict(args.expect_params),
        known_templates=frozenset(args.known_template) if args.known_template else None,
        seed=args.seed,
        log_requests=args.log_requests,
        faults=faults,
        receipts=receipts,
    )


def read_templates(path: Path) -> tuple[dict[str, Any], ...]:
    """The catalogue entries of a `--templates` file; ValueError (one line) when unusable."""
    try:
        document = orjson.loads(path.read_bytes())
        parse_catalogue(document)  # every entry must be a template Meta could have listed
    except (OSError, orjson.JSONDecodeError, TemplateError) as exc:
        raise ValueError(f"--templates {path}: {exc}") from None
    entries = document.get("data", document) if isinstance(document, dict) else document
    return tuple(entries) if isinstance(entries, list) else (entries,)


async def run_mock_server(
    config: MockConfig, host: str, port: int, *, on_ready: Callable[[str], None] | None = None
) -> None:
    """`daemon.mockapi.server.run_mock_server`, imported on first use: the mock's schema and
    server load in a quarter of a second that no other command needs to spend."""
    from daemon.mockapi import server

    await server.run_mock_server(config, host, port, on_ready=on_ready)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; prints ``mock-api listening on URL`` once ready."""
    from daemon.engine import eventloop

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"wa-sender mock-api: {exc}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"mock-api listening on {url}", flush=True)

    try:
        eventloop.run(
            run_mock_server(config, args.host, args.port, on_ready=ready), args.event_loop
        )
    except ConfigError as exc:
        print(f"wa-sender mock-api: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"wa-sender mock-api: cannot serve on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


def handle(args: argparse.Namespace, config: object) -> int:
    """The main CLI's ``handler(args, config)`` form; the mock needs nothing from config."""
    return run(args)
