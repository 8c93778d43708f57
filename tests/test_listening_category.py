"""A `template_category_update` through the real daemon's webhook changes the category of the
template's campaigns that may still send (the one marketing suppression, caps and pricing read,
and the stored binding the preparer reads), and `campaign status` shows it; a finished
campaign keeps the category it was sent under. Real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import asyncpg

from daemon.core.payload import Template
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.db import listening_store
from daemon.db.campaigns import create_campaign, get_campaign
from daemon.db.importer import import_contacts
from tests.helpers.data import phone, write_csv
from tests.test_cli import wa
from tests.test_listening_e2e import Harness, envelope, harness, until
from tests.test_template_import import definition

NAME = "sample_body_types"


async def _campaign(conn: asyncpg.Connection, tmp_path: Path, label: str) -> int:
    spec = bind_template(definition(NAME), source=TemplateSource.CATALOGUE)
    campaign = await create_campaign(conn, label, Template(NAME, "en_US"), "1000001", spec=spec)
    columns = spec.import_columns()[0]
    header = ("phone", *columns)
    rows = [("+" + phone(i), *("1" for _ in columns)) for i in range(3)]
    await import_contacts(conn, campaign, write_csv(tmp_path / f"{label}.csv", rows, header))
    return campaign


async def _webhook_up(h: Harness) -> bool:
    try:
        return await h.post(envelope()) == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_a_category_update_moves_the_campaigns_of_the_template_and_is_shown(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    live = await _campaign(conn, tmp_path, "receipts")
    done = await _campaign(conn, tmp_path, "last month")
    await conn.execute("UPDATE campaigns SET state = 'finished' WHERE id = $1", done)
    assert (await get_campaign(conn, live)).template_spec.marketing is False
    change = {
        "field": "template_category_update",
        "value": {
            "message_template_id": 1234,
            "message_template_name": NAME,
            "message_template_language": "en_US",
            "previous_category": "UTILITY",
            "new_category": "MARKETING",
        },
    }
    async with harness(db_dsn) as h:
        await until(lambda: _webhook_up(h))
        assert await h.post(envelope(change)) == 200
        assert await h.post(envelope(change)) == 200  # delivered again: nothing more
    categories = dict(await conn.fetch("SELECT id, template_category FROM campaigns"))
    assert categories == {live: "MARKETING", done: "UTILITY"}
    assert (await get_campaign(conn, live)).template_spec.marketing is True
    assert (await get_campaign(conn, done)).template_spec.marketing is False

    shown = wa(db_dsn, "campaign", "status", str(live))
    assert shown.returncode == 0, shown.stderr
    assert "Category: MARKETING (changed by Meta from UTILITY)" in shown.stdout, shown.stdout
    assert any(
        x.startswith("Template: sample_body_types") and x.endswith("MARKETING")
        for x in shown.stdout.splitlines()
    ), shown.stdout
    health = json.loads(wa(db_dsn, "campaign", "status", str(live), "--json").stdout)["health"]
    assert health["category"] == "MARKETING"
    # the marketing-only stop now applies to it
    assert await listening_store.marketing_stop(conn, phone(1), None, "stop") == 1
