"""The webhook's group commit: POSTs that arrive while a store statement runs are stored by one
statement together, each answered only after that statement committed; a failure answers
every POST it carried non-200 (Meta retries), and nothing is stored twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import asyncpg

from daemon.db import receipts_store as store
from daemon.db.pool import open_pool
from daemon.engine.group_commit import IN_FLIGHT, GroupCommit
from daemon.engine.web import GROUP_KEY, WebDeps, build_web_app, serve_web_app
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign
from daemon.whatsapp.webhook import ReceiptRow
from tests.test_webhook import SECRET, envelope, status, statuses_change, web_config


def body_of(*wamids: str) -> bytes:
    return json.dumps(envelope(statuses_change(*(status(w) for w in wamids)))).encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
    async with session.post(url + "/webhook", data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def stored_wamids(conn: asyncpg.Connection) -> list[str]:
    return [r["wamid"] for r in await conn.fetch("SELECT wamid FROM status_receipts ORDER BY id")]


async def blocked_stores(conn: asyncpg.Connection, at_least: int = 1) -> list[int]:
    """The pids of the backends whose store statements wait on our lock (at least so many)."""
    for _ in range(250):
        pids = [
            r["pid"]
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
        ]
        if len(pids) >= at_least:
            return pids
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} store statements wait on the lock")


async def test_posts_that_arrive_while_statements_run_share_the_next_one_and_wait_for_its_commit(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    blocker = await asyncpg.connect(db_dsn)
    try:
        async with open_pool(db_dsn, min_size=1, max_size=8) as pool:
            app = build_web_app(WebDeps(web_config(), pool, asyncio.Event()))
            group = app[GROUP_KEY]
            async with (
                serve_web_app(app, "127.0.0.1", 0) as url,
                aiohttp.ClientSession() as session,
            ):
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute("LOCK TABLE status_receipts IN EXCLUSIVE MODE")
                # IN_FLIGHT statements start at once, one POST each...
                first = []
                for i in range(IN_FLIGHT):
                    first.append(asyncio.create_task(post(session, url, body_of(f"w.a{i}"))))
                    await blocked_stores(conn, i + 1)
                # ...and the POSTs that come in meanwhile wait for the next statement.
                later = [
                    asyncio.create_task(post(session, url, body_of("w.b1"))),
                    asyncio.create_task(post(session, url, body_of("w.c1", "w.c2"))),
                ]
                while len(group._waiting) < 2:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                # Nothing is committed yet, so no POST has been answered.
                assert not any(t.done() for t in first + later)
                await tx.rollback()  # the lock goes: the statements commit
                assert await asyncio.gather(*first, *later) == [200] * (IN_FLIGHT + 2)
    finally:
        await blocker.close()
    assert sorted(await stored_wamids(conn)) == sorted(
        [f"w.a{i}" for i in range(IN_FLIGHT)] + ["w.b1", "w.c1", "w.c2"]
    )
    # one POST per statement while fewer than IN_FLIGHT ran, then the two that waited together
    stats = group.stats
    assert (stats.statements, stats.bodies, stats.largest) == (IN_FLIGHT + 1, IN_FLIGHT + 2, 2)


async def test_a_failed_statement_answers_each_of_its_posts_503_and_a_retry_stores_once(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    blocker = await asyncpg.connect(db_dsn)
    bodies = [body_of(f"w.x{i}") for i in range(IN_FLIGHT)] + [
        body_of("w.y1", "w.y2"),
        body_of("w.z1"),
    ]
    try:
        async with open_pool(db_dsn, min_size=1, max_size=8) as pool:
            app = build_web_app(WebDeps(web_config(), pool, asyncio.Event()))
            group = app[GROUP_KEY]
            async with (
                serve_web_app(app, "127.0.0.1", 0) as url,
                aiohttp.ClientSession() as session,
            ):
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute("LOCK TABLE status_receipts IN EXCLUSIVE MODE")
                posts = []
                for i, body in enumerate(bodies[:IN_FLIGHT]):
                    posts.append(asyncio.create_task(post(session, url, body)))
                    await blocked_stores(conn, i + 1)
                posts += [asyncio.create_task(post(session, url, b)) for b in bodies[IN_FLIGHT:]]
                while len(group._waiting) < 2:
                    await asyncio.sleep(0.01)
                # The database "fails" under every statement, the grouped one included.
                while not all(p.done() for p in posts):
                    for pid in await blocked_stores(conn):
                        await conn.execute("SELECT pg_terminate_backend($1)", pid)
                    await asyncio.sleep(0.05)
                await tx.rollback()
                assert [p.result() for p in posts] == [503] * len(bodies)
                assert await stored_wamids(conn) == []
                assert group.stats.statements == 0
                # Meta delivers them again: stored, once each; another delivery is a replay.
                assert await asyncio.gather(*(post(session, url, b) for b in bodies)) == [200] * 5
                assert await post(session, url, bodies[-2]) == 200
    finally:
        await blocker.close()
    assert sorted(await stored_wamids(conn)) == sorted(
        [f"w.x{i}" for i in range(IN_FLIGHT)] + ["w.y1", "w.y2", "w.z1"]
    )


async def test_the_database_down_answers_503_for_every_concurrent_post() -> None:
    async with open_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1) as pool:
        app = build_web_app(WebDeps(web_config(), pool))
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(
                *(post(session, url, body_of(f"w.down{i}")) for i in range(5))
            )
    assert statuses == [503] * 5


def row(wamid: str, error_title: str | None = None) -> ReceiptRow:
    raw: dict[str, Any] = {"id": wamid, "status": "delivered"}
    return ReceiptRow(wamid, "delivered", None, None, "1000001", None, None, error_title, raw)


async def test_one_body_with_the_same_digest_twice_in_a_group_is_stored_once(
    conn: asyncpg.Connection,
) -> None:
    digest = hashlib.sha256(b"one body").digest()
    results = await store.store_receipt_bodies(
        conn, [([row("w.d1")], digest), ([row("w.other")], None), ([row("w.d1")], digest)]
    )
    assert results == [
        store.StoreResult(1, False),
        store.StoreResult(1, False),
        store.StoreResult(0, True),
    ]
    again = await store.store_receipt_bodies(conn, [([row("w.d1")], digest)])
    assert again == [store.StoreResult(0, True)]
    assert await stored_wamids(conn) == ["w.d1", "w.other"]


async def test_an_unstorable_body_fails_alone_and_its_group_is_stored(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
        group = GroupCommit(pool)
        outcomes = await asyncio.gather(
            group.store([row("w.ok1")], None),
            group.store([row("w.bad", error_title="a\u0000b")], None),
            group.store([row("w.ok2")], None),
            return_exceptions=True,
        )
    assert outcomes[0] == store.StoreResult(1, False) and outcomes[2] == store.StoreResult(1, False)
    assert isinstance(outcomes[1], asyncpg.DataError | UnicodeEncodeError)
    assert sorted(await stored_wamids(conn)) == ["w.ok1", "w.ok2"]


async def test_with_apply_on_ingest_a_post_is_answered_after_its_statuses_changed_the_contacts(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    campaign = await conn.fetchval(
        "INSERT INTO campaigns (name, template_name, template_language, phone_number_id, state)"
        " VALUES ('gc', 'spring_sale', 'en_US', '1000001', 'running') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO contacts (campaign_id, phone, state, wamid, attempts, sent_at)"
        " VALUES ($1, '15550000001', 'sent', 'w.known', 1, now() - interval '1 minute')",
        campaign,
    )
    async with open_pool(db_dsn, min_size=1, max_size=4) as pool:
        app = build_web_app(WebDeps(web_config(apply_on_ingest=True), pool, asyncio.Event()))
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            # no reconciler runs: the answer comes after the statement that applied the status
            assert await post(session, url, body_of("w.known", "w.unknown")) == 200
    assert await conn.fetchval("SELECT state::text FROM contacts WHERE wamid = 'w.known'") == (
        "delivered"
    )
    rows = await conn.fetch("SELECT wamid, processing_state FROM status_receipts ORDER BY id")
    assert [(r["wamid"], r["processing_state"]) for r in rows] == [
        ("w.known", "applied"),
        ("w.unknown", "pending"),  # its send is not recorded yet: left to the reconciler
    ]
    assert app[GROUP_KEY].stats.applied == 1 and app[GROUP_KEY].stats.pending == 1
