"""Tune the PgQueuer baseline's documented knobs before comparing with it.

Runs ``benchmarks/pgqueuer_baseline.py`` through the load-test harness (same mock, same
seeded contacts, measured the same way) for each ``batch_size`` x ``max_concurrent_tasks``
pair and prints its send rate; the best pair is what ``--compare pgqueuer`` uses
(``daemon/loadtest/baselines.py``), with the table in docs/performance.md.

    python benchmarks/pgqueuer_tuning.py [--contacts N] [--batch-sizes 10,25,50,100]
        [--max-tasks 0,64,200] [--json FILE]

``max_concurrent_tasks`` 0 means no cap (PgQueuer requires a cap to be >= 2 x batch_size;
pairs that break that rule are skipped).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.cli.loadtest import run
from daemon.loadtest.options import LoadtestOptions


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tune the PgQueuer baseline")
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--batch-sizes", type=_ints, default=[10, 25, 50, 100])
    parser.add_argument("--max-tasks", type=_ints, default=[0, 64, 200])
    parser.add_argument("--json", type=Path, default=Path("pgqueuer_tuning.json"))
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for batch_size in args.batch_sizes:
        for max_tasks in args.max_tasks:
            if max_tasks and max_tasks < 2 * batch_size:
                continue
            options = LoadtestOptions(
                contacts=args.contacts,
                systems=("pgqueuer",),
                pgqueuer_batch_size=batch_size,
                pgqueuer_max_tasks=max_tasks,  # 0: no cap
            )
            run_ = run(options, quiet=True)["runs"]["pgqueuer"]
            row = {
                "batch_size": batch_size,
                "max_concurrent_tasks": max_tasks or None,
                "sends_per_s": run_["throughput"]["sends_per_s"],
                "send_p99_ms": (run_["latency_ms"]["send"] or {}).get("p99"),
                "worker_cpu_s": run_["resources"]["sender"]["cpu_s"],
                "postgres_cpu_s": (run_["resources"].get("postgres") or {}).get("cpu_s"),
                "other_cpu_s": run_["resources"]["machine"]["other_cpu_s"],
                "ok": run_["invariants"]["ok"],
            }
            rows.append(row)
            print(
                f"batch_size {batch_size:>4}  max_concurrent_tasks {max_tasks or '-':>5}:"
                f" {row['sends_per_s'] or 0:>8,.0f} sends/s  worker CPU {row['worker_cpu_s']} s"
                f"  postgres CPU {row['postgres_cpu_s']} s  (other work on the machine:"
                f" {row['other_cpu_s']} CPU s)",
                flush=True,
            )
    best = max(rows, key=lambda r: r["sends_per_s"] or 0.0)
    print(f"best: batch_size {best['batch_size']}, max_tasks {best['max_concurrent_tasks']}")
    args.json.write_text(json.dumps({"rows": rows, "best": best}, indent=1) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
