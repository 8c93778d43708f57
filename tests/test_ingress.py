"""The web server's bounds, on loopback with raw sockets: connections over the cap, idle and
slowloris connections, slow bodies, oversized headers, the budget of bodies held before their
signature is known (with Content-Length and chunked), and large signed bodies."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from daemon.config import Config, Secret, with_overrides
from daemon.db.pool import open_pool
from daemon.engine.bodies import LARGE_SHARE, BodyBudget
from daemon.engine.ingress import MAX_HEADER_BYTES
from daemon.engine.web import STATS_KEY, WebDeps, WebhookStats, build_web_app, serve_web_app
from daemon.whatsapp.signature import sign
from tests.helpers.ingress import FORGED_SIGNATURE, request_head, signed_body

SECRET = "ingress-app-secret"
KIB = 1024


def ingress_config(**webhook: Any) -> Config:
    return with_overrides(
        Config(),
        whatsapp={"app_secret": Secret(SECRET)},
        webhook={"enabled": True, **webhook},
    )


@dataclass
class Server:
    host: str
    port: int
    app: web.Application
    conn: asyncpg.Connection
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def stats(self) -> WebhookStats:
        return self.app[STATS_KEY]

    @property
    def budget(self) -> BodyBudget:
        budget = self.stats.bodies
        assert budget is not None
        return budget

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.writers.append(writer)
        return reader, writer

    def close_clients(self) -> None:
        for writer in self.writers:
            writer.transport.abort()

    async def stored(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM status_receipts"))


Serve = Callable[..., AbstractAsyncContextManager[Server]]


@pytest.fixture
def serve(db_dsn: str, conn: asyncpg.Connection) -> Serve:
    """`async with serve(**webhook_keys) as server`: the web server with those limits."""

    @asynccontextmanager
    async def start(**webhook: Any) -> AsyncIterator[Server]:
        async with open_pool(db_dsn, min_size=1, max_size=4) as pool:
            app = build_web_app(WebDeps(ingress_config(**webhook), pool, asyncio.Event()))
            async with serve_web_app(app, "127.0.0.1", 0) as url:
                host, port = url.removeprefix("http://").rsplit(":", 1)
                server = Server(host, int(port), app, conn)
                try:
                    yield server
                finally:
                    server.close_clients()
                    await asyncio.sleep(0)

    return start


async def _status_line(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> str:
    line = await asyncio.wait_for(reader.readline(), timeout_s)
    return line.decode().strip()


async def _closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


async def _post(server: Server, body: bytes, signature: str | None = None) -> str:
    reader, writer = await server.connect()
    try:
        writer.write(request_head("/webhook", len(body), signature or sign(body, SECRET)) + body)
        return await _status_line(reader)
    finally:
        writer.close()


# -- connections -----------------------------------------------------------------------------


async def test_a_connection_over_max_connections_is_answered_503_and_closed(serve: Serve) -> None:
    async with serve(max_connections=5) as server:
        held = [await server.connect() for _ in range(5)]
        await asyncio.sleep(0.05)
        assert server.stats.connections.open == 5
        reader, writer = await server.connect()
        assert await _status_line(reader) == "HTTP/1.1 503 Service Unavailable"
        assert await _closed_within(reader, 1.0)
        assert server.stats.connections.closed["too_many"] == 1
        held[0][1].close()
        await asyncio.sleep(0.05)
        reader, writer = await server.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _status_line(reader) == "HTTP/1.1 200 OK"
        writer.close()
        for _, w in held[1:]:
            w.close()


async def test_200_idle_connections_are_closed_within_the_keepalive_timeout(serve: Serve) -> None:
    async with serve(keepalive_timeout_s=1.0, header_timeout_s=5.0) as server:

        async def idle() -> float | None:
            reader, _ = await server.connect()
            started = time.monotonic()
            return time.monotonic() - started if await _closed_within(reader, 4.0) else None

        lifetimes = await asyncio.gather(*(idle() for _ in range(200)))
        assert None not in lifetimes
        closed = [t for t in lifetimes if t is not None]
        # Not before the timeout; after it, within the event loop's lag on a busy machine.
        assert min(closed) >= 1.0 - 0.05 and max(closed) <= 1.0 + 1.0, (min(closed), max(closed))
        assert server.stats.connections.closed["idle"] == 200
        assert server.stats.connections.open == 0


async def test_200_slowloris_connections_are_answered_408_within_the_header_timeout(
    serve: Serve,
) -> None:
    """One header byte every 0.2 s keeps aiohttp's own keep-alive timer from mattering; the
    header deadline runs from each request's first byte."""
    async with serve(keepalive_timeout_s=30.0, header_timeout_s=1.0) as server:

        async def slowloris() -> tuple[float, str]:
            reader, writer = await server.connect()
            started = time.monotonic()
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
            answer = asyncio.ensure_future(reader.readline())
            try:
                while not answer.done():
                    writer.write(b"X")
                    await asyncio.wait([answer], timeout=0.2)
            except OSError:
                pass
            line = (await answer).decode().strip()
            writer.close()
            return time.monotonic() - started, line

        results = await asyncio.gather(*(slowloris() for _ in range(200)))
        assert {line for _, line in results} == {"HTTP/1.1 408 Request Timeout"}
        elapsed = [e for e, _ in results]
        assert min(elapsed) >= 1.0 - 0.05 and max(elapsed) <= 1.0 + 1.0, (
            min(elapsed),
            max(elapsed),
        )
        assert server.stats.connections.closed["header_timeout"] == 200


async def test_a_keep_alive_connection_serves_requests_then_idles_out(serve: Serve) -> None:
    async with serve(keepalive_timeout_s=0.5) as server:
        reader, writer = await server.connect()
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await _status_line(reader) == "HTTP/1.1 200 OK"
            await reader.readuntil(b'{"status": "ok"}')
            await asyncio.sleep(0.3)  # shorter than the timeout: each request restarts it
        assert await _closed_within(reader, 1.5)
        assert server.stats.connections.closed["idle"] == 1


async def test_headers_over_the_limit_are_431(serve: Serve) -> None:
    async with serve() as server:
        reader, writer = await server.connect()
        padding = "".join(f"X-Pad-{i}: {'p' * 300}\r\n" for i in range(MAX_HEADER_BYTES // 300 + 2))
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{padding}\r\n".encode())
        assert await _status_line(reader) == "HTTP/1.1 431 Request Header Fields Too Large"
        assert await _closed_within(reader, 1.0)
        assert server.stats.connections.closed["headers_too_large"] == 1


# -- bodies ----------------------------------------------------------------------------------


async def test_a_body_not_received_in_time_is_408_and_its_budget_given_back(serve: Serve) -> None:
    async with serve(body_timeout_s=0.5) as server:
        reader, writer = await server.connect()
        writer.write(request_head("/webhook", 1000) + b"x" * 10)
        started = time.monotonic()
        assert await _status_line(reader) == "HTTP/1.1 408 Request Timeout"
        assert 0.5 - 0.05 <= time.monotonic() - started <= 0.5 + 1.0
        assert await _closed_within(reader, 1.0)
        assert server.budget.used == 0
        assert server.stats.responses[408] == 1


async def test_an_unsigned_body_is_401_before_any_of_it_is_read(serve: Serve) -> None:
    async with serve() as server:
        reader, writer = await server.connect()
        writer.write(request_head("/webhook", 3 * 1024 * KIB, signature=None) + b"x" * 100)
        assert await _status_line(reader) == "HTTP/1.1 401 Unauthorized"
        assert server.budget.peak == 0
        assert await _closed_within(reader, 1.0)


async def test_large_bodies_fill_only_their_share_and_a_small_signed_post_still_fits(
    serve: Serve,
) -> None:
    limit = 1024 * KIB
    async with serve(max_body_bytes=512 * KIB, max_pending_bytes=limit) as server:
        _, first_w = await server.connect()
        first_w.write(request_head("/webhook", 500 * KIB) + bytes(500 * KIB - 1))
        await first_w.drain()
        while server.budget.used == 0:
            await asyncio.sleep(0.01)
        assert server.budget.used == 500 * KIB
        # 500 KiB more would pass the large bodies' share (7/8 of 1 MiB): refused at once.
        assert limit * LARGE_SHARE < 1000 * KIB
        second_r, second_w = await server.connect()
        second_w.write(request_head("/webhook", 500 * KIB) + bytes(1000))
        assert await _status_line(second_r) == "HTTP/1.1 503 Service Unavailable"
        assert await _closed_within(second_r, 1.0)
        # A small signed body fits in what is left.
        assert await _post(server, signed_body("wamid.small")) == "HTTP/1.1 200 OK"
        assert await server.stored() == 1
        first_w.transport.abort()
        for _ in range(100):
            if server.budget.used == 0:
                break
            await asyncio.sleep(0.01)
        assert server.budget.used == 0
        assert server.budget.refused == 1


async def test_a_chunked_body_takes_the_budget_as_it_arrives(serve: Serve) -> None:
    limit = 1024 * KIB
    async with serve(max_body_bytes=512 * KIB, max_pending_bytes=limit) as server:
        head = (
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nX-Hub-Signature-256: {FORGED_SIGNATURE}\r\n\r\n"
        ).encode()
        piece = b"%x\r\n%s\r\n" % (16 * KIB, bytes(16 * KIB))
        held = []
        for _ in range(2):
            reader, writer = await server.connect()
            writer.write(head + piece * 28)  # 448 KiB each: 896 KiB, within 7/8 of 1 MiB
            held.append((reader, writer))
        while server.budget.used < 2 * 448 * KIB:
            await asyncio.sleep(0.01)
        reader, writer = await server.connect()
        writer.write(head + piece * 4)
        assert await _status_line(reader) == "HTTP/1.1 503 Service Unavailable"
        held[1][1].transport.abort()
        while server.budget.used > 448 * KIB:
            await asyncio.sleep(0.01)
        # Past max_body_bytes a chunked body is 413 while being read.
        held[0][1].write(piece * 5)
        assert await _status_line(held[0][0]) == "HTTP/1.1 413 Request Entity Too Large"
        for _ in range(100):
            if server.budget.used == 0:
                break
            await asyncio.sleep(0.01)
        assert server.budget.used == 0


async def test_a_large_signed_body_is_stored_and_its_memory_given_back(serve: Serve) -> None:
    statuses = [
        {"id": f"wamid.big{i}", "status": "delivered", "timestamp": "1750030073"}
        for i in range(2000)
    ]
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "1000001"},
                            "statuses": statuses,
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(document).encode()
    assert len(body) > 64 * KIB  # read into a memory map, not into Python objects
    async with serve() as server:
        assert await _post(server, body) == "HTTP/1.1 200 OK"
        assert await server.stored() == 2000
        assert server.budget.used == 0 and server.budget.peak == len(body)


@pytest.mark.parametrize(
    ("used", "n", "large", "fits"),
    [
        (0, 1000, False, True),
        (0, 1001, False, False),  # over the whole budget
        (0, 875, True, True),  # 7/8 of 1000
        (0, 876, True, False),
        (875, 125, False, True),  # small bodies may use the last eighth
        (875, 1, True, False),
    ],
)
def test_the_budget_keeps_an_eighth_for_small_bodies(
    used: int, n: int, large: bool, fits: bool
) -> None:
    budget = BodyBudget(1000)
    budget.used = used
    assert budget.try_take(n, large=large) is fits
    assert budget.used == (used + n if fits else used)


async def test_a_request_still_running_past_its_deadline_is_cut_off(
    db_dsn: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. a client that never reads its answer: the connection is closed body_timeout_s +
    REQUEST_GRACE_S after its handler started."""
    monkeypatch.setattr("daemon.engine.ingress.REQUEST_GRACE_S", 0.3)

    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(1.2)  # the handler is not cancelled; the connection is closed
        return web.Response(text="late")

    def install(app: web.Application) -> None:
        app.router.add_get("/stuck", stuck)

    config = ingress_config(body_timeout_s=0.2)
    async with open_pool(db_dsn, min_size=1, max_size=2) as pool:
        app = build_web_app(WebDeps(config, pool, extra_routes=[install]))
        async with serve_web_app(app, "127.0.0.1", 0) as url:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            started = time.monotonic()
            writer.write(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await _closed_within(reader, 2.0)
            assert 0.5 - 0.05 <= time.monotonic() - started <= 0.5 + 1.0
            assert app[STATS_KEY].connections.closed["request_timeout"] == 1
            writer.transport.abort()


async def test_a_flood_of_refused_requests_logs_ten_lines_a_second_not_one_each(
    serve: Serve,
) -> None:
    from structlog.testing import capture_logs

    async with serve() as server:
        with capture_logs() as logs:
            answers = [await _post(server, b"{}", FORGED_SIGNATURE) for _ in range(100)]
            await asyncio.sleep(1.05)
            answers.append(await _post(server, b"{}", FORGED_SIGNATURE))
        assert answers == ["HTTP/1.1 403 Forbidden"] * 101
        assert server.stats.responses[403] == 101
        rejected = [e for e in logs if e["event"] == "webhook_rejected"]
        assert len(rejected) <= 10 + 10  # the flood may straddle a second
        assert sum(e.get("not_logged_before", 0) for e in rejected) + len(rejected) == 101
