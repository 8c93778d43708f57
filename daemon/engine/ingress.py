"""The web server's connections, bounded: how many at once, how long each may stay idle, take
over its request headers or hold a request, how large its headers may be, and how much of it
is read at a time.

aiohttp's server alone gives a keep-alive timeout (which also ends a first request whose
headers never complete, but only from the connection's start), per-line header limits,
`client_max_size` (checked while reading a body it holds whole) and per-connection flow
control; it has no cap on connections, no header deadline, no deadline for a body, and it
reads up to 256 KiB per socket read (the event loop's read size) before any handler sees the
request: 600 connections cost 150 MB before the first one could be refused. So each accepted
connection goes through a `GuardedConnection`, which sits between the transport and aiohttp's
`RequestHandler`:

- over `max_connections` open ones, a new connection is answered 503 and closed before
  aiohttp sees it;
- it reads into one shared `READ_BUFFER_BYTES` buffer (a `BufferedProtocol`), so a read
  never brings in more than that (aiohttp's `read_bufsize` bounds what then waits unread);
- its phase clock: *idle* (connected, or between requests) ends after `keepalive_timeout_s`
  with a plain close; *headers* (from a request's first byte until its handler starts) ends
  after `header_timeout_s` with 408, and headers past `MAX_HEADER_BYTES` get 431; *request*
  (a handler runs; it bounds its own body read by `body_timeout_s`) is cut off
  `REQUEST_GRACE_S` after that, e.g. an answer its client never reads.

`track_requests` (an aiohttp middleware) tells the guard when a handler starts and ends.

aiohttp's own knobs, as `serve_web_app` sets them: `keepalive_timeout` only backs the guard
up (idle + header time + 1 s); `read_bufsize` = `READ_BUFFER_BYTES` (a request's unread body
pauses the socket at twice that); `lingering_time` 0 (aiohttp would otherwise read and discard
up to 10 s of a refused body: CPU for the attacker's bytes); `client_max_size` stays as a
second check (`engine/bodies.py` reads bodies itself); `handler_cancellation` stays off: the
webhook handler's body read ends by itself when its client goes (the read raises), and
cancelling a store mid-statement would gain nothing (the digest makes a retry harmless).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from daemon.logs import get_logger

log = get_logger(__name__)

READ_BUFFER_BYTES: Final = 16 * 1024
MAX_HEADER_BYTES: Final = 16 * 1024  # request line and headers; Meta's are about 1 KB
REQUEST_GRACE_S: Final = 15.0  # past body_timeout_s: storing (5 s at most) and answering
BACKLOG: Final = 1024

_HEADERS_END = b"\r\n\r\n"


def _raw_response(status: str, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


TOO_MANY_CONNECTIONS: Final = _raw_response("503 Service Unavailable", "too many connections")
HEADER_TIMEOUT: Final = _raw_response("408 Request Timeout", "headers not received in time")
HEADERS_TOO_LARGE: Final = _raw_response(
    "431 Request Header Fields Too Large", "request headers too large"
)


@dataclass(frozen=True)
class IngressLimits:
    """The bounds of one server's connections (from `[webhook]`)."""

    max_connections: int = 512
    keepalive_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 20.0


@dataclass
class ConnectionStats:
    """Connections of one server: open now, and how many ended each way."""

    open: int = 0
    accepted: int = 0
    closed: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("too_many", "idle", "header_timeout", "headers_too_large", "request_timeout"), 0
        )
    )


class Phase(Enum):
    """Where a connection is in its request cycle."""

    IDLE = "idle"  # connected, or between requests
    HEADERS = "headers"  # a request's first bytes are in, its headers not yet whole
    HEADERS_DONE = "headers_done"  # its headers are whole, its handler about to start
    REQUEST = "request"  # a handler runs


class ConnectionGuard:
    """The connections of one server: the protocol factory for `loop.create_server`."""

    def __init__(
        self,
        make_handler: Callable[[], RequestHandler],
        limits: IngressLimits,
        stats: ConnectionStats | None = None,
    ) -> None:
        self.limits = limits
        self.stats = stats if stats is not None else ConnectionStats()
        self._make_handler = make_handler
        self._buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self)


class GuardedConnection(asyncio.BufferedProtocol):
    """One connection: the guard's checks around aiohttp's `RequestHandler`."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        self._handler: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._phase = Phase.IDLE
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen while looking for the end of the headers

    # -- transport callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse the connection over the cap; else hand it to a new aiohttp handler."""
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        guard = self._guard
        if guard.stats.open >= guard.limits.max_connections:
            guard.stats.closed["too_many"] += 1
            transport.write(TOO_MANY_CONNECTIONS)
            _close_soon(transport)
            return
        guard.stats.open += 1
        guard.stats.accepted += 1
        self._handler = guard._make_handler()
        self._handler.connection_made(transport)
        self._enter(Phase.IDLE, guard.limits.keepalive_timeout_s)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The guard's shared read buffer (each read is handed over before the next one)."""
        return self._guard._buffer

    def buffer_updated(self, nbytes: int) -> None:
        """`nbytes` were read into the buffer: check the headers' size, pass them on."""
        handler = self._handler
        if handler is None:
            return  # refused: its answer is on its way out
        data = bytes(self._guard._buffer[:nbytes])
        if self._phase is Phase.IDLE:
            self._header_bytes = 0
            self._tail = b""
            self._enter(Phase.HEADERS, self._guard.limits.header_timeout_s)
        if self._phase is Phase.HEADERS:
            seen = self._tail + data
            end = seen.find(_HEADERS_END)
            if end < 0:
                self._header_bytes += len(data)
                self._tail = seen[-3:]
                if self._header_bytes > MAX_HEADER_BYTES:
                    self._refuse("headers_too_large", HEADERS_TOO_LARGE)
                    return
            else:
                if self._header_bytes + end + 4 - len(self._tail) > MAX_HEADER_BYTES:
                    self._refuse("headers_too_large", HEADERS_TOO_LARGE)
                    return
                self._phase = Phase.HEADERS_DONE
        handler.data_received(data)

    def eof_received(self) -> bool | None:
        """The client closed its side: as aiohttp decides (it closes)."""
        if self._handler is None:
            return None
        return self._handler.eof_received()  # type: ignore[func-returns-value]

    def pause_writing(self) -> None:
        """The transport's write buffer is full."""
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        """The transport's write buffer drained."""
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Gone: let aiohttp clean up, stop the clock, count it out."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handler, self._handler = self._handler, None
        self._transport = None
        if handler is not None:
            self._guard.stats.open -= 1
            handler.connection_lost(exc)

    # -- the request cycle (from track_requests) ----------------------------------------

    def request_started(self) -> None:
        """A handler starts: the request's own deadline (body, storing, answering)."""
        limits = self._guard.limits
        self._enter(Phase.REQUEST, limits.body_timeout_s + REQUEST_GRACE_S)

    def request_finished(self) -> None:
        """Its handler returned (the answer is being written): idle again."""
        self._enter(Phase.IDLE, self._guard.limits.keepalive_timeout_s)

    def close(self) -> None:
        """Close the connection now."""
        if self._handler is not None:
            self._handler.force_close()
        elif self._transport is not None:
            self._transport.close()

    # -- the clock ---------------------------------------------------------------------

    def _enter(self, phase: Phase, timeout_s: float) -> None:
        self._phase = phase
        deadline = self._loop.time() + timeout_s
        self._deadline = deadline
        # Armed at the earliest deadline; a later one re-arms when the timer fires (one
        # timer per connection, not one per request).
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._handler is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline
            return
        if self._phase is Phase.IDLE:
            self._guard.stats.closed["idle"] += 1
            self.close()
        elif self._phase is Phase.REQUEST:
            self._guard.stats.closed["request_timeout"] += 1
            log.warning("web_request_cut_off", after_s=self._guard.limits.body_timeout_s)
            self.close()
        else:
            self._refuse("header_timeout", HEADER_TIMEOUT)

    def _refuse(self, reason: str, answer: bytes) -> None:
        self._guard.stats.closed[reason] += 1
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)
        self.close()


def _close_soon(transport: asyncio.Transport) -> None:
    """Close after the answer is flushed, without reading what the client still sends."""
    try:
        transport.pause_reading()
    except (RuntimeError, NotImplementedError):
        pass
    transport.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the request's connection guard when its handler starts and ends."""
    transport = request.transport
    guarded = transport.get_protocol() if transport is not None else None
    if not isinstance(guarded, GuardedConnection):
        return await handler(request)
    guarded.request_started()
    try:
        return await handler(request)
    finally:
        guarded.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port", "bound")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: IngressLimits,
        stats: ConnectionStats | None = None,
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        server = runner.server
        assert server is not None
        self._guard = ConnectionGuard(server, limits, stats)
        self._host = host
        self._port = port
        self.bound: tuple[str, int] | None = None

    @property
    def guard(self) -> ConnectionGuard:
        """The site's connection guard (its stats)."""
        return self._guard

    @property
    def name(self) -> str:
        """The URL it listens on."""
        host, port = self.bound or (self._host, self._port)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> None:
        """Listen."""
        await super().start()
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"backlog": self._backlog, "reuse_address": True}
        server = await loop.create_server(self._guard, self._host, self._port, **kwargs)
        self._server = server
        sock: socket.socket = server.sockets[0]
        self.bound = sock.getsockname()[:2]
