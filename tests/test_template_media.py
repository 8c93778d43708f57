"""A campaign's header file: uploaded once per sending number (POST /{phone_number_id}/media)
however many contacts it has, its id kept, and uploaded again before Meta forgets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, get_campaign
from daemon.db.importer import import_contacts
from daemon.db.templates_store import campaign_media, save_catalogue
from daemon.engine.preparer import CampaignPreparer
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.create import CampaignRequest, create_campaign_from_request
from tests.helpers.daemon import (
    daemon_config,
    running_daemon,
    wait_campaign_state,
    wait_until_final,
)
from tests.templates_matrix import TINY_PDF

WABA = "102290129340398"


async def document_campaign(
    conn: asyncpg.Connection, tmp_path: Path, number: str, contacts: int, offset: int = 0
) -> int:
    brochure = tmp_path / "brochure.pdf"
    brochure.write_bytes(TINY_PDF)
    request = CampaignRequest(
        name=f"brochure {number}",
        template="sample_document_named",
        language="en_US",
        phone_number_id=number,
        header_file=brochure,
    )
    cid = (await create_campaign_from_request(conn, request, WABA)).campaign_id
    path = tmp_path / f"{number}.csv"
    path.write_text(
        "phone,body.first_name\n"
        + "".join(f"+44770{offset + i:07d},Name{i}\n" for i in range(contacts)),
        encoding="utf-8",
    )
    assert (await import_contacts(conn, cid, path)).imported == contacts
    return cid


async def test_10000_contacts_upload_the_file_once_per_sending_number(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await save_catalogue(conn, WABA, list(SAMPLE_TEMPLATES))
    first = await document_campaign(conn, tmp_path, "1000001", 5000)
    second = await document_campaign(conn, tmp_path, "1000002", 5000, offset=5000)
    async with start_mock_server(MockConfig(record_bodies=True)) as mock:
        for cid in (first, second):
            await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"rate_per_second": 20000.0})
        async with running_daemon(config, db_dsn):
            for cid in (first, second):
                assert await wait_until_final(conn, cid) == {"sent": 5000}
        assert mock.state.uploads == {"1000001": 1, "1000002": 1}
        ids = {
            number: next(m for m, f in mock.state.media.items() if f.phone_number_id == number)
            for number in ("1000001", "1000002")
        }
        for _, number, body in mock.state.bodies:
            document = body["template"]["components"][0]["parameters"][0]["document"]
            assert document == {"id": ids[number], "filename": "brochure.pdf"}
    assert len(mock.state.bodies) == 10000
    stored = await campaign_media(conn, first, "1000001")
    assert stored is not None and stored.media_id == ids["1000001"]


async def test_the_file_is_uploaded_again_before_its_id_expires(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await save_catalogue(conn, WABA, list(SAMPLE_TEMPLATES))
    cid = await document_campaign(conn, tmp_path, "1000001", 1)
    campaign = await get_campaign(conn, cid)
    now = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    async with start_mock_server() as mock:
        config = daemon_config(mock.base_url)
        preparer = CampaignPreparer(config, clock=lambda: now[0])
        try:
            first = await preparer.prepare(conn, campaign)
            again = await preparer.prepare(conn, campaign)
            now[0] += timedelta(days=28, hours=23)  # the id still has more than a day
            still = await preparer.prepare(conn, campaign)
            assert mock.state.uploads == {"1000001": 1}
            now[0] += timedelta(hours=2)  # now within a day of the 30 days
            renewed = await preparer.prepare(conn, campaign)
            assert mock.state.uploads == {"1000001": 2}
        finally:
            await preparer.close()
    assert first is not None and again is first and still is first
    assert renewed is not None and renewed.media_id != first.media_id
    body = orjson.loads(renewed.build("1555", {"body.first_name": "A"}, "c"))
    assert body["template"]["components"][0]["parameters"][0]["document"]["id"] == renewed.media_id
    row = await conn.fetchrow("SELECT media_id, uploads, uploaded_at FROM campaign_media")
    assert (row["media_id"], row["uploads"], row["uploaded_at"]) == (renewed.media_id, 2, now[0])


async def test_an_expired_id_in_the_database_is_replaced_before_sending(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await save_catalogue(conn, WABA, list(SAMPLE_TEMPLATES))
    cid = await document_campaign(conn, tmp_path, "1000001", 20)
    long_ago = datetime.now(UTC) - timedelta(days=31)
    await conn.execute(
        "INSERT INTO campaign_media VALUES ($1, '1000001', 'expired-id', $2, $3)",
        cid,
        long_ago,
        long_ago + timedelta(days=30),
    )
    async with start_mock_server(MockConfig(record_bodies=True)) as mock:
        await change_campaign_state(conn, cid, CampaignCommand.START)
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            assert await wait_until_final(conn, cid) == {"sent": 20}
        assert mock.state.uploads == {"1000001": 1}
        used = {
            b["template"]["components"][0]["parameters"][0]["document"]["id"]
            for _, _, b in mock.state.bodies
        }
    assert used == set(mock.state.media) and "expired-id" not in used


async def test_a_refused_upload_pauses_the_campaign_with_the_reason(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await save_catalogue(conn, WABA, list(SAMPLE_TEMPLATES))
    cid = await document_campaign(conn, tmp_path, "999", 5)
    async with start_mock_server(MockConfig(phone_number_ids=frozenset({"1000001"}))) as mock:
        await change_campaign_state(conn, cid, CampaignCommand.START)
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            await wait_campaign_state(conn, cid, "paused")
        assert mock.state.requests == 0
    reason = (await get_campaign(conn, cid)).pause_reason
    assert reason is not None and reason.startswith("header file refused: upload of brochure.pdf")
    assert "code 100" in reason
