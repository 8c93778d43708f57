"""Replayed webhook bodies cost nothing: the same signed body (same SHA-256) seen again within
the replay window is acknowledged 200 without storing its statuses again, counted in a metric;
past the window it is new, and upkeep prunes the digests that are older."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from daemon.config import Config, Secret, with_overrides
from daemon.db import receipts_store as store
from daemon.db.pool import open_pool
from daemon.engine.metrics import Metrics
from daemon.engine.upkeep import digest_prune_loop
from daemon.engine.web import STATS_KEY, WebDeps, WebhookStats, build_web_app, serve_web_app
from daemon.engine.webhook_metrics import WebhookCollector
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign
from tests.helpers.ingress import signed_body

SECRET = "replay-app-secret"


@dataclass
class Server:
    url: str
    app: web.Application
    session: aiohttp.ClientSession
    conn: asyncpg.Connection

    async def post(self, body: bytes) -> int:
        headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
        async with self.session.post(self.url + "/webhook", data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def receipts(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM status_receipts"))

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics") as resp:
            return await resp.text()


@pytest.fixture
async def server(db_dsn: str, conn: asyncpg.Connection) -> AsyncIterator[Server]:
    config = with_overrides(
        Config(), whatsapp={"app_secret": Secret(SECRET)}, webhook={"enabled": True}
    )
    stats = WebhookStats()
    metrics = Metrics()
    metrics.registry.register(WebhookCollector(stats))
    async with open_pool(db_dsn, min_size=1, max_size=8) as pool:
        deps = WebDeps(config, pool, extra_routes=[metrics.install_routes], stats=stats)
        app = build_web_app(deps)
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            yield Server(url, app, session, conn)


async def test_a_thousand_replays_of_one_signed_body_store_one_receipt(server: Server) -> None:
    body = signed_body("wamid.replayed")
    statuses = [await server.post(body) for _ in range(1000)]
    assert statuses == [200] * 1000
    assert await server.receipts() == 1
    stats = server.app[STATS_KEY]
    assert (stats.stored, stats.replays) == (1, 999)
    assert "wa_sender_webhook_replays_total 999.0" in await server.metrics()
    digests = await server.conn.fetch("SELECT digest FROM webhook_digests")
    assert [bytes(r["digest"]) for r in digests] == [hashlib.sha256(body).digest()]
    print(
        f"\n1000 POSTs of one signed body: {await server.receipts()} receipt stored, "
        f"{stats.replays} replays acknowledged"
    )


async def test_concurrent_copies_of_one_body_store_it_once(server: Server) -> None:
    body = signed_body("wamid.raced")
    statuses = await asyncio.gather(*(server.post(body) for _ in range(50)))
    assert statuses == [200] * 50
    assert await server.receipts() == 1
    assert server.app[STATS_KEY].replays == 49


async def test_a_different_body_about_the_same_message_is_stored(server: Server) -> None:
    """Only the exact bytes are a replay: Meta's own retries carry the same body; a new status
    (another body) is stored and the reconciler judges it."""
    assert await server.post(signed_body("wamid.twice")) == 200
    assert await server.post(signed_body("wamid.twice") + b" ") == 200
    assert await server.receipts() == 2


async def test_a_body_seen_before_the_window_is_new_again(server: Server) -> None:
    body = signed_body("wamid.old")
    assert await server.post(body) == 200
    await server.conn.execute("UPDATE webhook_digests SET received_at = now() - interval '8 days'")
    assert await server.post(body) == 200
    assert await server.receipts() == 2
    assert server.app[STATS_KEY].replays == 0
    # Its digest is young again: the next copy is a replay.
    assert await server.post(body) == 200
    assert await server.receipts() == 2


async def test_a_body_the_database_could_not_take_is_not_remembered(server: Server) -> None:
    """The digest and the statuses are one statement: a body whose only status PostgreSQL
    could not hold (a NUL in a wamid: left out as malformed, acknowledged) leaves no digest."""
    body = signed_body("wamid.nul\x00")
    assert await server.post(body) == 200
    assert await server.conn.fetchval("SELECT count(*) FROM webhook_digests") == 0


async def test_upkeep_prunes_digests_past_the_window(db_dsn: str, conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO webhook_digests (digest, received_at) "
        "SELECT sha256(i::text::bytea), now() - make_interval(days => i % 10) "
        "FROM generate_series(1, 25000) AS i"
    )
    younger = await conn.fetchval(
        "SELECT count(*) FROM webhook_digests WHERE received_at >= now() - interval '7 days'"
    )
    assert await store.prune_webhook_digests(conn, 7 * 24 * 3600.0, batch=1000) == 25000 - younger
    async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
        task = asyncio.create_task(digest_prune_loop(pool, 3 * 24 * 3600.0, every_s=0.05))
        try:
            for _ in range(200):
                oldest = await conn.fetchval(
                    "SELECT min(received_at) > now() - interval '3 days' FROM webhook_digests"
                )
                if oldest:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
    assert oldest
