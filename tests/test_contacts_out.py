"""Contacts out: export (streamed, formula cells neutralised), one contact's history,
retarget to the contacts in chosen states, delete of a draft."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import asyncpg
import pytest

from daemon.core.states import CampaignCommand, ContactState
from daemon.db.campaigns import add_suppression, change_campaign_state, get_campaign
from daemon.errors import TransitionError
from daemon.ops.contacts_out import EXPORT_COLUMNS, contact_history, export_contacts
from daemon.ops.render import csv_safe
from daemon.ops.retarget import delete_campaign, retarget
from tests.helpers.data import campaign_with_contacts, phone

MIXED = [
    "sent",
    "delivered",
    "read",
    "delivery_failed",
    "sending_failed",
    "error",
    "canceled_by_admin",
]


async def _mix_states(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    await conn.execute(
        "UPDATE contacts SET state = ($2::text[])[1 + (id % 7)]::contact_state,"
        " error_code = CASE WHEN id % 7 = 5 THEN 131000 END"
        " WHERE campaign_id = $1",
        campaign_id,
        MIXED,
    )
    rows = await conn.fetch(
        "SELECT state::text, count(*) FROM contacts WHERE campaign_id = $1 GROUP BY 1", campaign_id
    )
    return {r[0]: r[1] for r in rows}


async def test_retarget_takes_exactly_the_contacts_in_the_named_states(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    source = await campaign_with_contacts(conn, tmp_path, 10_000)
    counts = await _mix_states(conn, source)
    assert sum(counts.values()) == 10_000 and len(counts) == 7
    suppressed = await conn.fetch(
        "SELECT phone FROM contacts WHERE campaign_id = $1 AND state = 'error' ORDER BY id LIMIT 3",
        source,
    )
    for r in suppressed:
        await add_suppression(conn, r["phone"], "opt-out")
    await conn.execute(
        'UPDATE contacts SET params = \'{"first_name": "Frozen"}\' WHERE campaign_id = $1'
        " AND state = 'delivery_failed'",
        source,
    )
    result = await retarget(
        conn, source, [ContactState.ERROR, ContactState.DELIVERY_FAILED], "again"
    )
    assert result.copied == counts["error"] + counts["delivery_failed"] - 3
    assert result.suppressed == 3
    new = await get_campaign(conn, result.campaign_id)
    old = await get_campaign(conn, source)
    assert (new.name, new.state.value, new.template, new.phone_number_id) == (
        "again",
        "draft",
        old.template,
        old.phone_number_id,
    )
    rows = await conn.fetch(
        "SELECT state::text AS state, count(*) AS n, count(DISTINCT phone) AS phones,"
        " count(*) FILTER (WHERE params->>'first_name' = 'Frozen') AS frozen"
        " FROM contacts WHERE campaign_id = $1 GROUP BY 1",
        result.campaign_id,
    )
    assert [tuple(r) for r in rows] == [
        ("initial", result.copied, result.copied, counts["delivery_failed"])
    ]
    taken = await conn.fetchval(
        "SELECT count(*) FROM contacts n JOIN contacts o ON o.phone = n.phone"
        " AND o.campaign_id = $2 WHERE n.campaign_id = $1"
        " AND o.state NOT IN ('error', 'delivery_failed')",
        result.campaign_id,
        source,
    )
    assert taken == 0


async def test_delete_removes_a_draft_only(conn: asyncpg.Connection, tmp_path: Path) -> None:
    draft = await campaign_with_contacts(conn, tmp_path, 5)
    running = await campaign_with_contacts(conn, tmp_path, 5, offset=10)
    await change_campaign_state(conn, running, CampaignCommand.START)
    await delete_campaign(conn, draft)
    assert await conn.fetchval("SELECT count(*) FROM contacts WHERE campaign_id = $1", draft) == 0
    assert await conn.fetchval("SELECT count(*) FROM campaigns WHERE id = $1", draft) == 0
    with pytest.raises(TransitionError, match="only a draft campaign can be deleted"):
        await delete_campaign(conn, running)


async def test_export_csv_has_every_column_and_neutralises_formulas(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await campaign_with_contacts(conn, tmp_path, 20)
    await _mix_states(conn, campaign_id)
    await conn.execute(
        'UPDATE contacts SET params = \'{"first_name": "=HYPERLINK(\\"http://x\\")"}\','
        " error_title = '@SUM(1)' WHERE campaign_id = $1 AND phone = $2",
        campaign_id,
        phone(0),
    )
    out = io.StringIO(newline="")
    n = await export_contacts(conn, campaign_id, out)
    assert n == 20
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert tuple(rows[0]) == (*EXPORT_COLUMNS, "param.first_name")
    first = rows[0]
    assert first["phone"] == phone(0)
    assert first["param.first_name"] == '\'=HYPERLINK("http://x")'
    assert json.loads(first["params"]) == {"first_name": '=HYPERLINK("http://x")'}
    assert first["error_title"] == "'@SUM(1)"
    assert json.loads(rows[1]["params"]) == {"first_name": "Name1"}
    assert {r["state_label"] for r in rows} >= {"Sent", "Delivered", "Error"}
    only = io.StringIO(newline="")
    assert await export_contacts(conn, campaign_id, only, states=[ContactState.ERROR]) == sum(
        1 for r in rows if r["state"] == "error"
    )


def test_csv_safe_neutralises_formula_starts_not_numbers() -> None:
    assert csv_safe("=1+1") == "'=1+1"
    assert csv_safe("+44 7700 900000") == "'+44 7700 900000"
    assert csv_safe("-2") == "-2"
    assert csv_safe("@x") == "'@x"
    assert csv_safe("Anna") == "Anna"


async def test_export_json_is_one_array(conn: asyncpg.Connection, tmp_path: Path) -> None:
    campaign_id = await campaign_with_contacts(conn, tmp_path, 3)
    out = io.StringIO()
    assert await export_contacts(conn, campaign_id, out, fmt="json") == 3
    document = json.loads(out.getvalue())
    assert [d["params"] for d in document] == [{"first_name": f"Name{i}"} for i in range(3)]
    assert document[0]["state_label"] == "Initial"


async def test_show_gives_state_receipts_and_suppression(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    campaign_id = await campaign_with_contacts(conn, tmp_path, 2)
    contact_id = await conn.fetchval(
        "UPDATE contacts SET state = 'delivered', attempts = 2, wamid = 'wamid.A',"
        " sent_at = now(), delivered_at = now() WHERE phone = $1 RETURNING id",
        phone(1),
    )
    for status in ("sent", "delivered"):
        await conn.execute(
            "INSERT INTO status_receipts (wamid, status, raw, processing_state, contact_id)"
            " VALUES ('wamid.A', $1, '{}', 'applied', $2)",
            status,
            contact_id,
        )
    await add_suppression(conn, phone(1), "opt-out")
    history = await contact_history(conn, campaign_id, phone(1))
    (contact,) = history.contacts
    assert (contact["state_label"], contact["attempts"], contact["region"]) == (
        "Delivered",
        2,
        "GB",
    )
    assert [r["status"] for r in contact["receipts"]] == ["sent", "delivered"]
    assert history.suppression is not None and history.suppression["reason"] == "opt-out"
    nobody = await contact_history(conn, campaign_id, "447700999999")
    assert nobody.contacts == [] and nobody.suppression is None
