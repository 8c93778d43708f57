"""Odd, poisonous and unknown answers from the API (issue 21, item 3), end to end: the real
daemon against the mock (mockapi/oddities.py), real PostgreSQL.

An answer that leaves it unknown whether the API took the message is an unknown outcome under
recovery.unknown_outcome (never a plain transient retry): no resend under `error`, none under
`reconcile` when the receipt comes, one by design under `retry`. A poisonous answer never fails
the flush of its batch-mates, and the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.config import Secret
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.engine.service import default_components
from daemon.mockapi.config import FaultConfig, MockConfig, ReceiptConfig
from daemon.mockapi.oddities import ACCEPTED_KINDS, ODD_KINDS, UNKNOWN_KINDS
from daemon.mockapi.server import RunningMock, start_mock_server
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.data import campaign_with_contacts, phone

SECRET = "odd-app-secret"
FINAL_SENT = {"sent", "delivered", "read"}
NOT_ACCEPTED_TRANSIENT = ("html_502", "redirect_307", "retry_after_429")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def run_odd_campaign(
    db_dsn: str,
    conn: asyncpg.Connection,
    tmp_path: Path,
    odd: dict[str, str],
    contacts: int,
    *,
    policy: str = "reconcile",
    receipts: bool = False,
    on_send: Any = None,
    sender: dict[str, Any] | None = None,
) -> tuple[int, dict[str, int], Counter[str], RunningMock]:
    """One campaign with these odd answers: (campaign id, final counts, accepted per phone)."""
    cid = await campaign_with_contacts(conn, tmp_path, contacts)
    port = free_port()
    receipt_config = (
        ReceiptConfig(
            enabled=True,
            webhook_url=f"http://127.0.0.1:{port}/webhook",
            app_secret=SECRET,
            delivered_rate=0.5,
            read_rate=0.2,
        )
        if receipts
        else ReceiptConfig()
    )
    mock_config = MockConfig(
        faults=FaultConfig(odd_answers=odd, hang_s=2.0), receipts=receipt_config
    )
    async with start_mock_server(mock_config) as mock:
        config = daemon_config(
            mock.base_url,
            whatsapp={
                "app_secret": Secret(SECRET),
                "request_timeout_s": 1.0,
                "access_token": Secret("test-token"),
            },
            recovery={
                "unknown_outcome": policy,
                # With receipts, the grace period outlasts the sent receipt (<= 0.1 s here).
                "grace_s": 5.0 if receipts else 0.3,
                "lease_s": 30.0,
            },
            webhook={"enabled": receipts, "host": "127.0.0.1", "port": port},
            **({"sender": sender} if sender else {}),
        )
        components = default_components(config) if receipts else None
        async with running_daemon(config, db_dsn, components=components, on_send=on_send):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            counts = await wait_until_final(conn, cid, timeout_s=90)
            if receipts:
                async with asyncio.timeout(30):
                    await mock.receipts.drain()
        accepted = Counter(m.to for m in mock.state.accepted)
        assert set(mock.api.oddities.served) == set(odd)  # every odd answer was given
    return cid, counts, accepted, mock


async def contact(conn: asyncpg.Connection, cid: int, to: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT state::text AS state, attempts, unknown_attempts, outcome_unknown, wamid,"
        " error_code, error_title FROM contacts WHERE campaign_id = $1 AND phone = $2",
        cid,
        to,
    )


# -- each odd answer under each unknown-outcome policy -----------------------------------------

POLICY_CASES = [
    (kind, policy) for kind in sorted(UNKNOWN_KINDS) for policy in ("reconcile", "error", "retry")
] + [(kind, "error") for kind in NOT_ACCEPTED_TRANSIENT]


@pytest.mark.parametrize(("kind", "policy"), POLICY_CASES)
async def test_an_odd_answer_follows_the_unknown_outcome_policy(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path, kind: str, policy: str
) -> None:
    odd_phone = phone(7)
    receipts = policy == "reconcile"
    cid, counts, accepted, _ = await run_odd_campaign(
        db_dsn, conn, tmp_path, {odd_phone: kind}, 20, policy=policy, receipts=receipts
    )
    row = await contact(conn, cid, odd_phone)
    others = {p: n for p, n in accepted.items() if p != odd_phone}
    assert len(others) == 19 and set(others.values()) == {1}
    if kind in NOT_ACCEPTED_TRANSIENT:  # the API did not take it: a plain, bounded retry
        assert accepted[odd_phone] == 1
        assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("sent", 2, 0)
        return
    if policy == "reconcile":  # the receipt (by callback data) proves the send: no resend
        assert accepted[odd_phone] == 1, "resent although the receipt came"
        assert row["state"] in FINAL_SENT
        # 1 unknown attempt, or 0 when the receipt came before the answer (late_answer).
        assert (row["attempts"], row["outcome_unknown"]) == (1, False)
        assert row["unknown_attempts"] in (0, 1)
        assert row["wamid"] is not None
    elif policy == "error":  # strict at-most-once: never resent
        assert accepted[odd_phone] == 1, "resent under recovery.unknown_outcome = error"
        assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("error", 1, 1)
        assert row["outcome_unknown"] is True
        assert row["error_title"].startswith("outcome unknown: "), row["error_title"]
        assert counts == {"sent": 19, "error": 1}
    else:  # retry: at-least-once, resent once by design (the mock took the first one too)
        assert accepted[odd_phone] == 2
        assert (row["state"], row["attempts"], row["unknown_attempts"]) == ("sent", 2, 1)
        assert counts == {"sent": 20}


def test_the_odd_answer_kinds_are_all_covered() -> None:
    covered = {kind for kind, _ in POLICY_CASES}
    poison = {"duplicate_wamid", "code_over_int32", "code_over_int64", "nul_title"}
    assert covered | poison == set(ODD_KINDS)
    assert UNKNOWN_KINDS <= ACCEPTED_KINDS


# -- every poison and odd answer in one 2,000-contact run ----------------------------------------


def expected(kind: str) -> dict[str, Any]:
    """The designed end of the poisoned contact under reconcile without receipts (grace 0.3 s:
    an unknown outcome is resent once, the mock answers normally the second time)."""
    if kind in UNKNOWN_KINDS:
        return {"state": "sent", "attempts": 2, "unknown_attempts": 1, "accepted": 2}
    if kind in NOT_ACCEPTED_TRANSIENT:
        return {"state": "sent", "attempts": 2, "unknown_attempts": 0, "accepted": 1}
    return {
        "duplicate_wamid": {"state": "error", "attempts": 1, "unknown_attempts": 1, "accepted": 1},
        "code_over_int32": {"state": "sending_failed", "attempts": 1, "accepted": 0},
        "code_over_int64": {"state": "sending_failed", "attempts": 1, "accepted": 0},
        "nul_title": {"state": "sending_failed", "attempts": 1, "accepted": 0},
    }[kind]


async def test_every_poison_and_odd_answer_in_a_2000_contact_run(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    # Spread over the run, one recipient each; the duplicate wamid repeats the message before.
    odd = {phone(100 + 113 * i): kind for i, kind in enumerate(ODD_KINDS)}
    cid, counts, accepted, _ = await run_odd_campaign(db_dsn, conn, tmp_path, odd, 2000)
    assert sum(counts.values()) == 2000
    assert counts == {"sent": 1996, "sending_failed": 3, "error": 1}
    for to, kind in odd.items():
        row = await contact(conn, cid, to)
        want = expected(kind)
        got = {k: row[k] for k in want if k != "accepted"}
        assert got == {k: v for k, v in want.items() if k != "accepted"}, (kind, dict(row))
        assert accepted.get(to, 0) == want["accepted"], kind
        title = row["error_title"]
        if kind == "duplicate_wamid":
            assert row["wamid"] is None and title.startswith(
                "answer not recordable: UniqueViolationError"
            ), title
        elif kind == "code_over_int32":
            assert (row["error_code"], title) == (None, "code 9999999999: Unexpected code")
        elif kind == "code_over_int64":
            assert row["error_code"] is None and "99999999999999999999" in title
        elif kind == "nul_title":
            assert (row["error_code"], title) == (131026, "Message undeliverable\ufffd (NUL)")
    # Every other contact went once: nothing resent but the unknown outcomes (by design).
    resent = {to for to, n in accepted.items() if n > 1}
    assert resent == {to for to, kind in odd.items() if kind in UNKNOWN_KINDS}


async def test_retry_after_on_429_holds_the_number_that_long(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    starts: list[tuple[float, str, str]] = []

    def on_send(work: Any, outcome: Any, took: float) -> None:
        starts.append((time.monotonic() - took, work.contact.phone, outcome.kind.value))

    odd_phone = phone(40)
    _, counts, accepted, _ = await run_odd_campaign(
        db_dsn,
        conn,
        tmp_path,
        {odd_phone: "retry_after_429"},
        120,
        on_send=on_send,
        sender={"rate_per_second": 100.0, "burst": 5.0, "concurrency": 8},
    )
    assert counts == {"sent": 120} and accepted[odd_phone] == 1
    starts.sort()
    throttled_at = next(t for t, p, kind in starts if p == odd_phone and kind == "throttled")
    after = [t for t, _, _ in starts if t > throttled_at]
    assert after, "nothing was sent after the 429"
    # Retry-After: 2 - no send of that number starts within 2 s of the 429 (a few ms of
    # sends already paced before it excepted: concurrency 8 at 100/s is 10 ms apart).
    first_after = min(t for t in after if t > throttled_at + 0.05)
    print(f"first send after the 429 (Retry-After: 2): {first_after - throttled_at:.3f} s")
    assert first_after - throttled_at >= 1.9
    retried_at = next(t for t, p, kind in starts if p == odd_phone and kind == "accepted")
    assert retried_at - throttled_at >= 1.9
