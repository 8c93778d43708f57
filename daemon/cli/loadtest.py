"""``wa-sender loadtest``: the real daemon against the mock Cloud API, measured."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from daemon.cli.common import Commands
from daemon.config import Config
from daemon.loadtest.options import SYSTEMS, LoadtestError, LoadtestOptions


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or not section or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECTION.KEY=VALUE")
    return key.strip().lower(), value


def _systems(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in SYSTEMS or name == "wa-sender":
            raise argparse.ArgumentTypeError(
                f"cannot compare with {name!r}: floor, pgqueuer, template-body, no-replies,"
                " no-window, no-caps, no-planning or receipts-off"
            )
    return names


def add_parser(commands: Commands) -> None:
    """Register `loadtest`."""
    p = commands.add_parser(
        "loadtest",
        help="run the daemon against the mock Cloud API and measure it",
        description=(
            "Seed N generated contacts into a fresh database (embedded throwaway PostgreSQL,"
            " or a new loadtest_<random> database on the DATABASE_URL server, dropped after),"
            " start the mock Cloud API and `wa-sender run` as separate processes, wait until"
            " every contact is final (and every receipt applied), then report throughput,"
            " latency, CPU, memory and the invariants. Exit code 1 if an invariant fails."
        ),
    )
    p.add_argument(
        "--contacts", type=int, default=10_000, help="contacts to send to (default 10000)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="daemon limit, msg/s per number (default 0: unthrottled)",
    )
    p.add_argument("--burst", type=float, default=None, help="daemon burst (default rate/10)")
    p.add_argument(
        "--api-limit",
        type=float,
        default=0.0,
        help="mock limit, msg/s per number (default 0: none)",
    )
    p.add_argument("--api-burst", type=float, default=None, help="mock burst (default: the limit)")
    p.add_argument(
        "--latency-ms", type=float, default=0.0, help="mock latency per request (default 0)"
    )
    p.add_argument(
        "--error-rate", type=float, default=0.0, help="mock transient error rate, 0..1 (default 0)"
    )
    p.add_argument(
        "--receipts",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the mock posts status webhooks to the daemon (default off)",
    )
    p.add_argument(
        "--reply-rate",
        type=float,
        default=0.0,
        help="the mock answers this share of messages with an inbound reply (needs --receipts)",
    )
    p.add_argument(
        "--optout-rate",
        type=float,
        default=0.0,
        help="of all messages, this share is answered STOP (a text or the STOP button); the"
        " run checks every such phone is suppressed and sent nothing after it",
    )
    p.add_argument(
        "--mock-fast-lane",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the mock answers plain sends straight from the socket, at about half the CPU "
        "of aiohttp's server (default on)",
    )
    p.add_argument("--daemons", type=int, default=1, help="daemon processes (default 1)")
    p.add_argument(
        "--numbers", type=int, default=1, help="sending numbers, one campaign each (default 1)"
    )
    p.add_argument(
        "--kill-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="chaos: SIGKILL a daemon this often and restart it",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="sends in flight (default: max(64, 1.5 x rate x latency))",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="HTTP connection limit (default max(100, concurrency))",
    )
    p.add_argument("--floor", action="store_true", help="run only the floor (no database)")
    p.add_argument(
        "--compare",
        type=_systems,
        default=(),
        metavar="floor,pgqueuer,template-body,no-replies,no-window,no-caps,no-planning,receipts-off",
        help="also run these after wa-sender, same mock and data, and print ratios"
        " (template-body: wa-sender again with the body-only template; no-replies: again"
        " with no inbound replies; no-window: again without --window; no-caps: again without"
        " --caps; no-planning: again without both; receipts-off: again"
        " without status webhooks, with PostgreSQL's CPU and WAL per receipt from the"
        " difference)",
    )
    p.add_argument(
        "--window",
        default=None,
        metavar="SPEC",
        help="wa-sender's campaigns get this send window (e.g. 'Daily 00:00-24:00'), to"
        " measure its cost on the claim (with --compare no-window)",
    )
    p.add_argument(
        "--caps",
        default=None,
        metavar="RULES",
        help="the daemons get these frequency caps per phone ([limits] per_contact,"
        " comma-separated, e.g. '1/24h,3/7d'), to measure their cost on the claim (with"
        " --compare no-caps or no-planning)",
    )
    p.add_argument(
        "--template",
        default="body",
        metavar="body|rich|rich-all|FILE",
        help="wa-sender's template: body (one positional text variable, default), rich (an"
        " image header, four named variables of every type, url, quick-reply and copy-code"
        " buttons; image, currency code and payload campaign constants, six values per"
        " contact), rich-all (the same, every value per contact), or a JSON file in Meta's"
        " template shape",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the systems this many times, interleaved (every other round in reverse"
        " order); ratios are the median of the rounds' ratios (default 1)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="bound on the whole run (default 600)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every figure")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="write a plot")
    p.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="daemon config override (repeatable), e.g. sender.batch_size=1000",
    )
    p.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="run plain `wa-sender run` (no sender-side send latency)",
    )
    p.add_argument(
        "--pgqueuer-batch-size", type=int, default=None, help="PgQueuer batch_size (default 200)"
    )
    p.add_argument(
        "--pgqueuer-max-tasks",
        type=int,
        default=None,
        help="PgQueuer max_concurrent_tasks, 0: no cap (default 400)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the mock's random draws")
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="keep every process's log here (default: a temp dir, kept on failure)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_loadtest)


def options_from_args(args: argparse.Namespace) -> LoadtestOptions:
    """The LoadtestOptions the parsed flags describe."""
    systems = ("floor",) if args.floor else ("wa-sender", *args.compare)
    return LoadtestOptions(
        contacts=args.contacts,
        rate=args.rate,
        burst=args.burst,
        api_limit=args.api_limit,
        api_burst=args.api_burst,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        receipts=args.receipts,
        reply_rate=args.reply_rate,
        optout_rate=args.optout_rate,
        mock_fast_lane=args.mock_fast_lane,
        daemons=args.daemons,
        numbers=args.numbers,
        kill_every_s=args.kill_every,
        concurrency=args.concurrency,
        max_connections=args.max_connections,
        systems=systems,
        template=args.template,
        window=args.window,
        caps=args.caps,
        rounds=args.rounds,
        timeout_s=args.timeout,
        settings=tuple(args.settings),
        probe=args.probe,
        pgqueuer_batch_size=args.pgqueuer_batch_size,
        pgqueuer_max_tasks=args.pgqueuer_max_tasks,
        seed=args.seed,
        json_path=args.json,
        plot_path=args.plot,
        log_dir=args.log_dir,
    )


def cmd_loadtest(args: argparse.Namespace, config: Config) -> int:
    """`loadtest`: run, print the report; exit code 1 when an invariant failed."""
    options = options_from_args(args)
    report = run(options, quiet=args.quiet)
    print(_render(report))
    return 0 if report["ok"] else 1


def run(options: LoadtestOptions, *, quiet: bool = False) -> dict[str, Any]:
    """Run the load test (starting the embedded database unless DATABASE_URL is set), write
    ``--json`` and ``--plot``; the report."""
    from daemon.loadtest.harness import run_loadtest
    from daemon.loadtest.progress import Progress

    progress = Progress(quiet=quiet)
    keep = options.log_dir is not None
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="wa-sender-loadtest-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = True
    try:
        url = os.environ.get("DATABASE_URL")
        if url:
            report = asyncio.run(run_loadtest(options, url, log_dir, progress))
        else:
            from daemon.db.embedded import EmbeddedPostgres
            from daemon.loadtest.pgstats import PRELOAD_OPTIONS

            progress.note("starting a throwaway PostgreSQL")
            with EmbeddedPostgres(server_options=PRELOAD_OPTIONS) as server:
                report = asyncio.run(
                    run_loadtest(options, server.dsn, log_dir, progress, postgres_pid=server.pid)
                )
        failed = not report["ok"]
    finally:
        if failed and not keep:
            print(f"wa-sender loadtest: logs kept in {log_dir}", file=sys.stderr)
        elif not keep:
            shutil.rmtree(log_dir, ignore_errors=True)
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if options.plot_path is not None:
        from daemon.loadtest.plots import write_plot

        write_plot(report, options.plot_path)
    return report


def _render(report: dict[str, Any]) -> str:
    from daemon.loadtest.report import render

    return render(report)


__all__ = ["LoadtestError", "add_parser", "cmd_loadtest", "options_from_args", "run"]
