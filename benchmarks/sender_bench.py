"""wa-sender's send throughput against the mock Cloud API, in two scenarios.

- ``unthrottled``: mock at 0 ms latency and no rate limit, the daemon unthrottled: what the
  daemon (and this machine) can push.
- ``rate_1000_latency_200ms``: the daemon configured at 1,000 msg/s, the mock enforcing
  1,000 msg/s per number and answering after 200 ms: rate x latency = 200 requests in flight,
  so concurrency and connections are set to 300. Target: >= 990 msg/s sustained, no 429
  after the first second.

It drives the load-test harness (``wa-sender loadtest``): separate daemon and mock processes,
embedded PostgreSQL unless DATABASE_URL is set. Prints one line per scenario and writes every
figure as JSON.

    python benchmarks/sender_bench.py [--contacts N] [--json FILE] [--only NAME]
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

SCENARIOS: dict[str, dict[str, Any]] = {
    "unthrottled": {"rate": 0.0, "api_limit": 0.0, "latency_ms": 0.0},
    "rate_1000_latency_200ms": {
        "rate": 1000.0,
        "api_limit": 1000.0,
        "latency_ms": 200.0,
        "concurrency": 300,
        "max_connections": 300,
    },
}
DEFAULT_CONTACTS = {"unthrottled": 50_000, "rate_1000_latency_200ms": 30_000}


def bench(name: str, contacts: int, timeout_s: float) -> dict[str, Any]:
    options = LoadtestOptions(contacts=contacts, timeout_s=timeout_s, **SCENARIOS[name])
    report = run(options, quiet=True)
    result = report["runs"]["wa-sender"]
    throughput = result["throughput"]
    invariants = result["invariants"]
    return {
        "scenario": report["scenario"],
        "msg_per_s": throughput["sends_per_s"],
        "msg_per_s_sustained": throughput["sends_per_s_sustained"],
        "slowest_full_second": throughput["slowest_full_second"],
        "http_429": invariants["http_429"],
        "http_429_after_first_s": invariants["http_429_after_first_s"],
        "send_latency_ms": result["latency_ms"]["send"],
        "invariants_ok": invariants["ok"],
        "report": report,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wa-sender send throughput against the mock")
    parser.add_argument("--contacts", type=int, default=None, help="per scenario")
    parser.add_argument("--only", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="per scenario, seconds")
    parser.add_argument("--json", type=Path, default=Path("out/sender_bench.json"))
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    ok = True
    for name in [args.only] if args.only else list(SCENARIOS):
        contacts = args.contacts or DEFAULT_CONTACTS[name]
        figures = bench(name, contacts, args.timeout)
        results[name] = figures
        ok = ok and bool(figures["invariants_ok"])
        latency = figures["send_latency_ms"] or {}
        print(
            f"{name}: {figures['msg_per_s'] or 0:,.0f} msg/s"
            f" (sustained {figures['msg_per_s_sustained'] or 0:,.0f},"
            f" slowest second {figures['slowest_full_second']}),"
            f" {contacts:,} contacts, 429s {figures['http_429']}"
            f" ({figures['http_429_after_first_s']} after the first second),"
            f" send p50/p99 {latency.get('p50')}/{latency.get('p99')} ms",
            flush=True,
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"figures written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
