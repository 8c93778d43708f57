"""Import benchmark: a 1,000,000-row CSV with 1% invalid rows through `contacts import`'s code.

Prints rows/s and writes JSON. Uses DATABASE_URL if set, else a throwaway embedded PostgreSQL.
    python benchmarks/import_bench.py [--rows N] [--json out/import_bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

from daemon.core.payload import Template
from daemon.db.campaigns import create_campaign
from daemon.db.embedded import EmbeddedPostgres
from daemon.db.importer import import_contacts
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect


def write_csv(path: Path, rows: int, invalid_share: float, seed: int = 1) -> int:
    rng = random.Random(seed)
    bad_rows = set(rng.sample(range(rows), int(rows * invalid_share)))
    bad_values = ["", "not-a-phone", "123", "+1 555 ABC 1234"]
    with path.open("w", encoding="utf-8") as out:
        out.write("phone,first_name,order_id\n")
        for i in range(rows):
            phone = rng.choice(bad_values) if i in bad_rows else f"+1 555 {i:07d}"
            out.write(f"{phone},Guest{i},ORD{i}\n")
    return len(bad_rows)


async def measure(dsn: str, path: Path) -> dict[str, float | int]:
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
        campaign_id = await create_campaign(
            conn, "bench", Template("t", "en_US", ("first_name", "order_id")), "1"
        )
        started = time.perf_counter()
        result = await import_contacts(conn, campaign_id, path)
        seconds = time.perf_counter() - started
        in_db = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE campaign_id = $1", campaign_id
        )
    finally:
        await conn.close()
    return {
        "rows": result.rows,
        "imported": result.imported,
        "invalid": result.invalid,
        "rows_in_database": in_db,
        "seconds": round(seconds, 3),
        "rows_per_s": round(result.rows / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", default="out/import_bench.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        invalid = write_csv(path, args.rows, 0.01)
        url = os.environ.get("DATABASE_URL")
        if url:
            figures = asyncio.run(measure(url, path))
        else:
            with EmbeddedPostgres() as server:
                figures = asyncio.run(measure(server.dsn, path))
    figures["invalid_written"] = invalid
    assert figures["imported"] + figures["invalid"] == args.rows == figures["rows_in_database"]
    print(
        f"imported {figures['imported']:,} + invalid {figures['invalid']:,} = {figures['rows']:,}"
        f" rows in {figures['seconds']} s: {figures['rows_per_s']:,} rows/s"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
