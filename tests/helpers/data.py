"""Test data builders: campaigns and contacts made through the real store."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from daemon.core.payload import Template
from daemon.db.campaigns import create_campaign
from daemon.db.importer import import_contacts


def phone(i: int, country: str = "44770") -> str:
    """A valid number, digits as stored: +44 770 0000000 + i (UK mobiles; below 900000)."""
    return f"{country}{i:07d}"


def write_csv(
    path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("phone", "first_name")
) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


async def campaign_with_contacts(
    conn: asyncpg.Connection,
    tmp_path: Path,
    n: int,
    *,
    phone_number_id: str = "1000001",
    name: str = "test campaign",
    offset: int = 0,
) -> int:
    campaign_id = await create_campaign(
        conn, name, Template("spring_sale", "en_US", ("first_name",)), phone_number_id
    )
    csv_path = write_csv(
        tmp_path / f"contacts_{campaign_id}.csv",
        [("+" + phone(offset + i), f"Name{i}") for i in range(n)],
    )
    await import_contacts(conn, campaign_id, csv_path)
    return campaign_id
