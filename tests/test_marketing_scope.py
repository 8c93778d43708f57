"""A marketing-only stop (user_preferences, suppression scope `marketing`) blocks MARKETING
campaigns only: at import (`suppressed_marketing`), at stop time (pending contacts of marketing
campaigns only), in `campaign retarget`; an opt-out reply (scope `all`) blocks every campaign.
Real PostgreSQL, the real store."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from daemon.core.states import ContactState
from daemon.db import listening_store
from daemon.db.importer import import_contacts
from daemon.ops.retarget import retarget
from tests.helpers.data import campaign_with_contacts, phone, write_csv


async def _category(conn: asyncpg.Connection, campaign: int, category: str | None) -> None:
    await conn.execute(
        "UPDATE campaigns SET template_category = $2 WHERE id = $1", campaign, category
    )


async def _states(conn: asyncpg.Connection, campaign: int) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch(
        "SELECT phone, state::text, invalid_reason FROM contacts WHERE campaign_id = $1",
        campaign,
    )
    return {r["phone"]: (r["state"], r["invalid_reason"]) for r in rows}


async def _import(
    conn: asyncpg.Connection, tmp_path: Path, campaign: int, n: int
) -> dict[str, int]:
    csv_path = write_csv(
        tmp_path / f"more_{campaign}.csv", [("+" + phone(i), f"Name{i}") for i in range(n)]
    )
    result = await import_contacts(conn, campaign, csv_path)
    return result.reasons


async def test_import_flags_a_marketing_stop_only_in_a_marketing_campaign(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await listening_store.marketing_stop(conn, phone(1), None, "stopped marketing")
    await conn.execute(
        "INSERT INTO suppressions (phone, reason, source) VALUES ($1, 'replied STOP', 'inbound')",
        phone(2),
    )
    marketing = await campaign_with_contacts(conn, tmp_path, 0, name="offer")
    utility = await campaign_with_contacts(conn, tmp_path, 0, name="receipt")
    unknown = await campaign_with_contacts(conn, tmp_path, 0, name="legacy")
    await _category(conn, marketing, "MARKETING")
    await _category(conn, utility, "UTILITY")
    await _category(conn, unknown, None)

    assert await _import(conn, tmp_path, marketing, 4) == {
        "suppressed_marketing": 1,
        "suppressed": 1,
    }
    assert await _import(conn, tmp_path, utility, 4) == {"suppressed": 1}
    # a campaign of unknown category counts as marketing (the safe side)
    assert await _import(conn, tmp_path, unknown, 4) == {
        "suppressed_marketing": 1,
        "suppressed": 1,
    }
    assert (await _states(conn, marketing))[phone(1)] == ("invalid_record", "suppressed_marketing")
    assert (await _states(conn, utility))[phone(1)] == ("initial", None)
    assert (await _states(conn, utility))[phone(2)] == ("invalid_record", "suppressed")

    # resume lifts it: the next marketing import takes the phone
    assert await listening_store.marketing_resume(conn, phone(1))
    again = await campaign_with_contacts(conn, tmp_path, 0, name="next offer")
    await _category(conn, again, "MARKETING")
    assert await _import(conn, tmp_path, again, 4) == {"suppressed": 1}
    assert (await _states(conn, again))[phone(1)] == ("initial", None)


async def test_a_marketing_stop_stops_pending_contacts_of_marketing_campaigns_only(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marketing = await campaign_with_contacts(conn, tmp_path, 3, name="offer")
    utility = await campaign_with_contacts(conn, tmp_path, 3, name="receipt")
    await _category(conn, marketing, "MARKETING")
    await _category(conn, utility, "UTILITY")
    stopped = await listening_store.marketing_stop(conn, phone(1), "GB.1", "stopped marketing")
    assert stopped == 1
    assert (await _states(conn, marketing))[phone(1)][0] == "sending_failed"
    assert {s for s, _ in (await _states(conn, utility)).values()} == {"initial"}
    # a second stop (Meta delivers again) changes nothing more
    assert await listening_store.marketing_stop(conn, phone(1), "GB.1", "again") == 0


async def test_retarget_leaves_out_marketing_stopped_phones_only_for_a_marketing_target(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    marketing = await campaign_with_contacts(conn, tmp_path, 4, name="offer")
    utility = await campaign_with_contacts(conn, tmp_path, 4, name="receipt")
    await _category(conn, marketing, "MARKETING")
    await _category(conn, utility, "UTILITY")
    await conn.execute("UPDATE contacts SET state = 'error'")
    await listening_store.marketing_stop(conn, phone(1), None, "stopped marketing")
    await conn.execute(
        "INSERT INTO suppressions (phone, reason, source) VALUES ($1, 'replied STOP', 'inbound')",
        phone(2),
    )
    again = await retarget(conn, marketing, [ContactState.ERROR])
    assert (again.copied, again.suppressed) == (2, 2)
    assert set(await _states(conn, again.campaign_id)) == {phone(0), phone(3)}
    kept = await retarget(conn, utility, [ContactState.ERROR])
    assert (kept.copied, kept.suppressed) == (3, 1)
    assert set(await _states(conn, kept.campaign_id)) == {phone(0), phone(1), phone(3)}
