"""Attempts whose outcome is unknown (expired lease, dead daemon, shutdown cut-off) are counted
apart from `sender.max_attempts`, with their own bound `recovery.max_unknown_outcomes`.

A daemon SIGKILLed over and over must not exhaust contacts the API never refused, and a
contact that kills its daemon every time must still end, in `error`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from daemon.config import load_config
from daemon.core.decide import decide
from daemon.core.outcomes import Outcome, OutcomeKind
from daemon.core.payload import Template
from daemon.core.retry import RetryPolicy
from daemon.core.states import ContactState as S
from daemon.db import sender_store as store
from daemon.db.campaigns import create_campaign
from daemon.db.migrate import apply_migrations, pending_migrations
from daemon.errors import ConfigError
from tests.helpers.proc import REPO

DEAD = "dead-daemon"  # never heartbeats: lease recovery takes its claims back at once
RECOVERER = "recovering-daemon"
OWN = "stopping-daemon"
HOW = ["lease", "shutdown"]  # expire_leases (upkeep) and expire_own_contacts (shutdown)
TRANSIENT = Outcome(OutcomeKind.TRANSIENT, http_status=500, error_code=131000, error_title="x")


async def new_contact(conn: asyncpg.Connection, **columns: object) -> tuple[int, int]:
    """(campaign id, contact id) of one claimable contact."""
    campaign_id = await create_campaign(
        conn, "unknown", Template("spring_sale", "en_US", ()), "1000001"
    )
    names = ["campaign_id", "phone", *columns]
    values = [campaign_id, "15550000001", *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    contact_id = await conn.fetchval(
        f"INSERT INTO contacts ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        *values,
    )
    return campaign_id, contact_id


async def claim(conn: asyncpg.Connection, campaign_id: int, daemon: str) -> store.ClaimedContact:
    claimed = await store.claim_contacts(conn, campaign_id, daemon, 60.0, 10)
    assert len(claimed) == 1
    return claimed[0]


async def claim_and_expire(
    conn: asyncpg.Connection,
    campaign_id: int,
    how: str,
    *,
    policy: str = "reconcile",
    max_attempts: int = 3,
    max_unknown: int = 10,
) -> str:
    """Claim the contact, lose the attempt's outcome, recover it: the contact's new state."""
    if how == "lease":
        contact = await claim(conn, campaign_id, DEAD)
        rows = await store.expire_leases(
            conn, policy, 0.0, max_attempts, 5.0, RECOVERER, max_unknown
        )
        assert [r["id"] for r in rows] == [contact.id]
        state: str = rows[0]["state"]
        return state
    contact = await claim(conn, campaign_id, OWN)
    done = await store.expire_own_contacts(
        conn, [contact.id], policy, 0.0, max_attempts, OWN, max_unknown
    )
    assert done == "INSERT 0 1"  # the contact updated, its attempt logged (contact_attempts)
    state = await conn.fetchval("SELECT state::text FROM contacts WHERE id = $1", contact.id)
    return state


async def contact_row(conn: asyncpg.Connection, contact_id: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT state::text AS state, attempts, unknown_attempts, outcome_unknown, failed_at"
        " FROM contacts WHERE id = $1",
        contact_id,
    )


async def fail_transiently(
    conn: asyncpg.Connection, campaign_id: int, policy: RetryPolicy
) -> tuple[store.ClaimedContact, S]:
    """One claimed attempt answered by a transient API error, decided and recorded as the
    sender does it (`decide` gets the counted attempt, the record the attempt itself)."""
    contact = await claim(conn, campaign_id, OWN)
    now = datetime.now(UTC) - timedelta(seconds=1)  # a retry is due at once
    decision = decide(TRANSIENT, contact.counted_attempt, policy, now)
    result = store.SendResult(contact.id, contact.attempt, contact.phone, decision, now)
    assert await store.record_results(conn, [result]) == 1
    return contact, decision.state


@pytest.mark.parametrize("policy", ["reconcile", "retry"])
@pytest.mark.parametrize("how", HOW)
async def test_unknown_outcomes_do_not_use_up_max_attempts(
    conn: asyncpg.Connection, how: str, policy: str
) -> None:
    campaign_id, contact_id = await new_contact(conn)
    states = [
        await claim_and_expire(conn, campaign_id, how, policy=policy, max_attempts=3)
        for _ in range(5)  # max_attempts + 2
    ]
    assert states == ["retry_scheduled"] * 5
    row = await contact_row(conn, contact_id)
    assert dict(row) == {
        "state": "retry_scheduled",
        "attempts": 5,
        "unknown_attempts": 5,
        "outcome_unknown": True,
        "failed_at": None,
    }
    again = await claim(conn, campaign_id, OWN)
    assert (again.attempt, again.counted_attempt) == (6, 1)


@pytest.mark.parametrize("how", HOW)
async def test_a_contact_becomes_error_at_its_max_unknown_outcomes(
    conn: asyncpg.Connection, how: str
) -> None:
    campaign_id, contact_id = await new_contact(conn)
    states = [
        await claim_and_expire(conn, campaign_id, how, max_attempts=3, max_unknown=4)
        for _ in range(4)
    ]
    assert states == ["retry_scheduled"] * 3 + ["error"]
    row = await contact_row(conn, contact_id)
    assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("error", 4, 4)
    assert row["outcome_unknown"] is True and row["failed_at"] is not None
    assert await store.claim_contacts(conn, campaign_id, OWN, 60.0, 10) == []


@pytest.mark.parametrize("how", HOW)
async def test_the_error_policy_still_errors_at_the_first_unknown_outcome(
    conn: asyncpg.Connection, how: str
) -> None:
    campaign_id, contact_id = await new_contact(conn)
    assert await claim_and_expire(conn, campaign_id, how, policy="error") == "error"
    row = await contact_row(conn, contact_id)
    assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("error", 1, 1)
    assert row["failed_at"] is not None


async def test_transient_failures_keep_their_full_budget_after_unknown_outcomes(
    conn: asyncpg.Connection,
) -> None:
    policy = RetryPolicy(max_attempts=3, initial_s=0.0, max_s=0.0, jitter_s=0.0)
    campaign_id, contact_id = await new_contact(conn)
    for _ in range(2):
        assert await claim_and_expire(conn, campaign_id, "lease", max_attempts=3) == (
            "retry_scheduled"
        )
    seen = [await fail_transiently(conn, campaign_id, policy) for _ in range(3)]
    assert [(c.attempt, c.counted_attempt, state) for c, state in seen] == [
        (3, 1, S.RETRY_SCHEDULED),
        (4, 2, S.RETRY_SCHEDULED),
        (5, 3, S.ERROR),  # decide() on the last counted attempt: error
    ]
    row = await contact_row(conn, contact_id)
    assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("error", 5, 2)


@pytest.mark.parametrize("how", HOW)
async def test_the_expired_attempt_is_given_back_to_the_counted_budget(
    conn: asyncpg.Connection, how: str
) -> None:
    """Two transient failures, then the third (last counted) attempt's outcome is lost: it
    does not count, the contact gets its third counted attempt again."""
    policy = RetryPolicy(max_attempts=3, initial_s=0.0, max_s=0.0, jitter_s=0.0)
    campaign_id, contact_id = await new_contact(conn)
    for _ in range(2):
        await fail_transiently(conn, campaign_id, policy)
    assert await claim_and_expire(conn, campaign_id, how, max_attempts=3) == "retry_scheduled"
    contact, state = await fail_transiently(conn, campaign_id, policy)
    assert (contact.attempt, contact.counted_attempt, state) == (4, 3, S.ERROR)
    row = await contact_row(conn, contact_id)
    assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("error", 4, 1)


@pytest.mark.parametrize(
    ("counted_before", "max_attempts", "expected"),
    [(2, 3, "retry_scheduled"), (3, 3, "error"), (4, 2, "error")],
)
@pytest.mark.parametrize("how", HOW)
async def test_an_unknown_outcome_errors_once_the_counted_budget_is_used_up(
    conn: asyncpg.Connection, how: str, counted_before: int, max_attempts: int, expected: str
) -> None:
    """Counted attempts already at the bound (e.g. max_attempts lowered since): error; one
    short of it: retried (the expired attempt does not count)."""
    campaign_id, contact_id = await new_contact(
        conn, state="retry_scheduled", attempts=counted_before + 1, unknown_attempts=1
    )
    state = await claim_and_expire(conn, campaign_id, how, max_attempts=max_attempts)
    assert state == expected
    row = await contact_row(conn, contact_id)
    assert (row["attempts"], row["unknown_attempts"]) == (counted_before + 2, 2)


async def test_release_undoes_the_attempt_and_keeps_the_unknown_count(
    conn: asyncpg.Connection,
) -> None:
    campaign_id, contact_id = await new_contact(conn)
    for _ in range(2):
        await claim_and_expire(conn, campaign_id, "lease")
    contact = await claim(conn, campaign_id, OWN)
    assert (contact.attempt, contact.counted_attempt) == (3, 1)
    await store.release_contacts(conn, [contact.id], OWN)
    row = await contact_row(conn, contact_id)
    assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("retry_scheduled", 2, 2)
    again = await claim(conn, campaign_id, OWN)
    assert (again.attempt, again.counted_attempt) == (3, 1)


async def test_claim_within_limit_returns_the_counted_attempt(conn: asyncpg.Connection) -> None:
    campaign_id, _ = await new_contact(
        conn, state="retry_scheduled", attempts=4, unknown_attempts=3
    )
    claimed, quota, _ = await store.claim_within_limit(conn, campaign_id, OWN, 60.0, 10, 100)
    assert [(c.attempt, c.counted_attempt) for c in claimed] == [(5, 2)]
    assert quota == 99


async def test_migration_adds_the_column_to_existing_contacts(conn: asyncpg.Connection) -> None:
    # Back to schema version 2 with a contact in it, then migrate.
    await conn.execute("ALTER TABLE contacts DROP COLUMN unknown_attempts")
    await conn.execute("DELETE FROM schema_migrations WHERE version = 3")
    _, contact_id = await new_contact(conn, state="retry_scheduled", attempts=2)
    assert await pending_migrations(conn) == ["0003_unknown_attempts"]
    assert await apply_migrations(conn) == ["0003_unknown_attempts"]
    assert await pending_migrations(conn) == []
    assert (
        await conn.fetchval("SELECT unknown_attempts FROM contacts WHERE id = $1", contact_id) == 0
    )
    column = await conn.fetchrow(
        "SELECT is_nullable, column_default FROM information_schema.columns"
        " WHERE table_name = 'contacts' AND column_name = 'unknown_attempts'"
    )
    assert (column["is_nullable"], column["column_default"]) == ("NO", "0")


def test_max_unknown_outcomes_defaults_to_10_and_is_in_config_toml() -> None:
    assert load_config(None, environ={}).recovery.max_unknown_outcomes == 10
    shipped = load_config(REPO / "config.toml", environ={})
    assert shipped.recovery.max_unknown_outcomes == 10


def test_max_unknown_outcomes_from_the_environment() -> None:
    env = {"WA_SENDER_RECOVERY_MAX_UNKNOWN_OUTCOMES": "3"}
    assert load_config(None, environ=env).recovery.max_unknown_outcomes == 3


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_unknown_outcomes_must_be_at_least_1(value: str) -> None:
    env = {"WA_SENDER_RECOVERY_MAX_UNKNOWN_OUTCOMES": value}
    with pytest.raises(
        ConfigError, match=r"recovery\.max_unknown_outcomes must be a whole number from 1 to"
    ):
        load_config(None, environ=env)


def test_max_unknown_outcomes_must_be_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[recovery]\nmax_unknown_outcomes = 2.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"recovery\.max_unknown_outcomes must be int"):
        load_config(path, environ={})
