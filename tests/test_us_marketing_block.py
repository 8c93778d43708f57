"""Meta has not delivered MARKETING templates to US numbers since 2025-04-01: importing (or
retargeting) them into a marketing campaign makes invalid records `marketing_blocked_country`;
a utility campaign, other +1 regions (Canada) and `import.block_us_marketing = false` are not
blocked."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from daemon.core.payload import Template
from daemon.core.states import ContactState
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.db.campaigns import create_campaign
from daemon.db.importer import import_contacts
from daemon.ops.retarget import retarget
from tests.helpers.data import write_csv
from tests.test_template_import import definition

ROWS = [
    ("+1 202 555 0101", "us1"),  # Washington DC: region US
    ("+1 650 555 1234", "us2"),  # California: region US
    ("+1 416 555 0199", "ca"),  # Toronto: region CA, delivered by Meta
    ("+44 7911 123456", "uk"),
    ("+420 601 123 456", "cz"),
]


async def _campaign(conn: asyncpg.Connection, template: str) -> int:
    spec = bind_template(definition(template), source=TemplateSource.CATALOGUE)
    return await create_campaign(conn, template, Template(template, "en_US"), "1000001", spec=spec)


def _csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "c.csv", ROWS, header=("phone", "body.1"))


async def _states(conn: asyncpg.Connection, campaign_id: int) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT params->>'body.1' AS who, state::text, invalid_reason FROM contacts"
        " WHERE campaign_id = $1",
        campaign_id,
    )
    return {r["who"]: (r["state"], r["invalid_reason"]) for r in rows}


async def test_marketing_campaign_blocks_us_numbers_only(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    cid = await _campaign(conn, "loadtest_offer")
    result = await import_contacts(conn, cid, _csv(tmp_path))
    assert (result.imported, result.invalid) == (3, 2)
    assert result.reasons == {"marketing_blocked_country": 2}
    states = await _states(conn, cid)
    assert states["us1"] == ("invalid_record", "marketing_blocked_country")
    assert states["us2"] == ("invalid_record", "marketing_blocked_country")
    assert states["ca"] == ("initial", None)
    assert states["uk"] == ("initial", None)
    assert states["cz"] == ("initial", None)


async def test_utility_campaign_sends_to_us(conn: asyncpg.Connection, tmp_path: Path) -> None:
    cid = await _campaign(conn, "sample_order_update")
    result = await import_contacts(conn, cid, _csv(tmp_path))
    assert (result.imported, result.invalid, result.reasons) == (5, 0, {})


async def test_switch_off_lets_us_numbers_in(conn: asyncpg.Connection, tmp_path: Path) -> None:
    cid = await _campaign(conn, "loadtest_offer")
    result = await import_contacts(conn, cid, _csv(tmp_path), block_us_marketing=False)
    assert (result.imported, result.invalid) == (5, 0)


async def test_retarget_into_marketing_blocks_us(conn: asyncpg.Connection, tmp_path: Path) -> None:
    cid = await _campaign(conn, "loadtest_offer")
    # Imported with the switch off (e.g. before it existed), then retargeted with it on.
    await import_contacts(conn, cid, _csv(tmp_path), block_us_marketing=False)
    r = await retarget(conn, cid, [ContactState.INITIAL])
    assert (r.copied, r.suppressed, r.blocked) == (3, 0, 2)
    states = await _states(conn, r.campaign_id)
    assert states["us1"] == ("invalid_record", "marketing_blocked_country")
    assert states["ca"] == ("initial", None)
    off = await retarget(conn, cid, [ContactState.INITIAL], block_us_marketing=False)
    assert (off.copied, off.blocked) == (5, 0)
