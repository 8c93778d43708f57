"""Import benchmark: a CSV with 1% invalid rows through `contacts import`'s code, at two sizes,
each in a process of its own, to show that memory does not grow with the file.

Prints rows/s and the importing process's peak RSS for each size (and its parse worker's,
db.import_worker), the import's timings (parse_s: waiting for parsed chunks, copy_s,
apply_wait_s: waiting for PostgreSQL past the parse), then exports the campaign
(`contacts export`, streamed) and prints its peak RSS too, and writes JSON. Uses
DATABASE_URL if set, else a throwaway embedded PostgreSQL. Phones are Czech mobiles, half
written internationally (`+420 601 234 567`), half nationally (`601 234 567`, read with the
default country CZ).
    python benchmarks/import_bench.py [--rows 100000,1000000] [--json out/import_bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon.core.payload import Template
from daemon.db.campaigns import create_campaign
from daemon.db.embedded import EmbeddedPostgres
from daemon.db.importer import import_contacts
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect
from daemon.ops.contacts_out import export_contacts


def write_csv(path: Path, rows: int, invalid_share: float, seed: int = 1) -> int:
    """The file: `rows` rows, `invalid_share` of them with a bad phone; the count of bad ones."""
    rng = random.Random(seed)
    bad_rows = set(rng.sample(range(rows), int(rows * invalid_share)))
    bad_values = ["", "not-a-phone", "123", "+1 555 ABC 1234"]
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,first_name,order_id\n")
        for i in range(rows):
            if i in bad_rows:
                phone = rng.choice(bad_values)
            else:
                block, n = 601 + i % 8, i // 8
                national = f"{block} {n // 1000:03d} {n % 1000:03d}"
                phone = f"+420 {national}" if i % 2 else national
            out.write(f"{phone},Guest{i},ORD{i}\n")
    return len(bad_rows)


def _cpu_seconds() -> float:
    """User + system CPU of this process and its waited-for children (the parse worker)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _server_cpu_seconds(pid: int) -> float:
    """User + system CPU of a PostgreSQL backend on this machine (0 when it is elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(dsn: str, path: Path) -> dict[str, float | int]:
    """Import `path` into a new campaign; the figures."""
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        campaign_id = await create_campaign(
            conn, "bench", Template("t", "en_US", ("first_name", "order_id")), "1"
        )
        backend = conn.get_server_pid()
        cpu_before = _cpu_seconds(), _server_cpu_seconds(backend)
        started = time.perf_counter()
        result = await import_contacts(conn, campaign_id, path, default_region="CZ")
        seconds = time.perf_counter() - started
        cpu_client = _cpu_seconds() - cpu_before[0]
        cpu_server = _server_cpu_seconds(backend) - cpu_before[1]
        in_db = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1", campaign_id
        )
        rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        export_started = time.perf_counter()
        with (path.parent / "export.csv").open("w", encoding="utf-8", newline="") as out:
            exported = await export_contacts(conn, campaign_id, out)
        export_seconds = time.perf_counter() - export_started
    finally:
        await conn.close()
    return {
        "rows": result.rows,
        "imported": result.imported,
        "invalid": result.invalid,
        "rows_in_database": in_db,
        "seconds": round(seconds, 3),
        "rows_per_s": round(result.rows / seconds),
        # CPU seconds of the import (this process and its parse worker; its server backend):
        # what a loaded machine's wall clock hides.
        "cpu_s_client": round(cpu_client, 2),
        "cpu_s_server": round(cpu_server, 2),
        **result.timings,
        "peak_rss_mb_import": round(rss_import / 1024, 1),
        # The parse worker's own peak (db.import_worker; its pages shared with this
        # process at the fork count in both), 0 when parsed in-process.
        "peak_rss_mb_parse_worker": result.timings.get("parse_worker_peak_rss_mb", 0),
        "exported": exported,
        "export_seconds": round(export_seconds, 3),
        "export_rows_per_s": round(exported / export_seconds),
    }


def single(rows: int, dsn: str | None) -> dict[str, float | int]:
    """One size, in this process: its figures, peak RSS included."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        invalid = write_csv(path, rows, 0.01)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if dsn:
            figures = asyncio.run(measure(dsn, path))
        else:
            with EmbeddedPostgres() as server:
                figures = asyncio.run(measure(server.dsn, path))
    figures["invalid_written"] = invalid
    figures["peak_rss_mb_before_import"] = round(rss_before / 1024, 1)
    # ru_maxrss only grows: peak_rss_mb_import is the import's peak, this one the export's too.
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    exact = figures["imported"] + figures["invalid"] == rows == figures["rows_in_database"]
    exact = exact and figures["exported"] == rows
    figures["exact"] = bool(exact and figures["invalid"] == invalid)
    return figures


def main() -> None:
    """Run each size in a child process, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="100000,1000000", help="sizes, comma-separated")
    parser.add_argument("--json", default="out/import_bench.json")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL")
    if args.single:
        print(json.dumps(single(args.single, dsn)))
        return
    results = []
    for rows in [int(n) for n in args.rows.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--single", str(rows)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        results.append(figures)
        print(
            f"{rows:>9,} rows: imported {figures['imported']:,} + invalid {figures['invalid']:,}"
            f" ({'exact' if figures['exact'] else 'NOT EXACT'}) in {figures['seconds']} s:"
            f" {figures['rows_per_s']:,} rows/s, peak RSS {figures['peak_rss_mb_import']} MB"
            f" (parse worker {figures['peak_rss_mb_parse_worker']} MB), CPU client"
            f" {figures['cpu_s_client']} s + server {figures['cpu_s_server']} s;"
            f" export {figures['exported']:,} in {figures['export_seconds']} s,"
            f" peak RSS {figures['peak_rss_mb']} MB"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    if not all(f["exact"] for f in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
