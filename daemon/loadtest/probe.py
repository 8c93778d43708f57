"""``wa-sender run`` with a send-latency probe: the daemon process the harness measures.

It is ``cmd_run`` (same config loading, logging, components and ``run_daemon``) plus the
``on_send`` observer that ``run_daemon`` offers, which times every POST from the daemon's side
(request written to response read, queueing in the daemon's own event loop included). Each
second's histogram is appended to ``--latency-out`` as one JSON line, so memory stays constant
and a SIGKILLed daemon loses at most its last second. The cost is one dict update per send
(compare ``--no-probe`` runs, which start ``wa-sender run`` itself).

    python -m daemon.loadtest.probe --latency-out FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from daemon.config import load_config
from daemon.engine import eventloop
from daemon.engine.claimer import Work
from daemon.engine.service import check_config_for_run, default_components, run_daemon
from daemon.errors import WaSenderError
from daemon.loadtest.latency import SecondlyRecorder
from daemon.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.loadtest.probe")
    parser.add_argument("--latency-out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(None)
        check_config_for_run(config)
        if not config.database.url:
            raise WaSenderError("the probe needs DATABASE_URL")
        configure_logging(config.logging.format, config.logging.level, stream=sys.stdout)
        with args.latency_out.open("a", encoding="utf-8") as out:
            recorder = SecondlyRecorder(out)

            def on_send(_work: Work, _outcome: object, latency_s: float) -> None:
                recorder.observe(latency_s * 1000.0, time.time())

            try:
                return eventloop.run(
                    run_daemon(
                        config,
                        config.database.url,
                        components=default_components(config),
                        on_send=on_send,
                    ),
                    config.runtime.event_loop,
                )
            finally:
                recorder.close()
    except WaSenderError as exc:
        print(f"wa-sender: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
