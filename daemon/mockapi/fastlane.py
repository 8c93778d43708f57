"""The mock's fast lane: its send endpoint served straight from the socket.

On one machine the mock shares the cores with the sender it measures, so each microsecond it
spends is taken from the sender. aiohttp's server costs more per request than the mock's own
work (request and response objects, a task step, the stream writer). The fast lane reads the
plain shape of a send itself, a keep-alive ``POST /{version}/{phone_number_id}/messages``
with a Content-Length body and no query string, and answers it with the bytes of the same
`answer` the aiohttp handler serves, in request order.

Anything else (another method or path, a query string, a chunked body, Expect, Upgrade,
``Connection: close``, no Host, HTTP/1.0, a malformed or oversized request) hands the connection,
from that request's first byte, to aiohttp's own protocol, which serves it and everything
after it exactly as it would have without the fast lane. The framing itself is pure and lives
in ``mockapi.http``; this module is the connection protocol and the site that starts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Protocol, cast

import structlog
from aiohttp import web
from yarl import URL

from daemon.mockapi.http import Framing, HttpDate, SendRequest, frame, response_bytes

log = structlog.get_logger()


class Unanswered(Enum):
    """A send the mock answers with a closed socket: at once, or after hanging (timeout)."""

    DROP = "drop"
    HANG = "hang"


Answer = tuple[int, bytes] | Unanswered


class SendEndpoint(Protocol):
    """What the fast lane needs of the mock (`MockApi`)."""

    @property
    def latency_s(self) -> float | None:
        """The latency to wait before this request's answer, None for none."""

    def arrived(self) -> None:
        """Count a send request as it arrives, before its latency."""

    def answer(self, phone_number_id: str, authorization: bytes, raw: bytes) -> Answer:
        """(HTTP status, JSON body) for one send, its latency already waited, or no answer."""

    async def hang(self) -> None:
        """A timeout fault: hold the request until the fault's time passes or shutdown."""


class FastLanes:
    """The fast-lane connections of one mock server, and how they close at shutdown."""

    def __init__(self, endpoint: SendEndpoint) -> None:
        self.endpoint = endpoint
        self.date = HttpDate()
        self.connections: set[FastLane] = set()
        self.served = 0  # requests answered in the fast lane
        self.handed_off = 0  # connections handed to aiohttp

    def factory(self, fallback: Callable[[], asyncio.Protocol]) -> Callable[[], FastLane]:
        """The server's protocol factory: a fast lane per connection, which hands off to
        ``fallback`` (aiohttp's protocol)."""
        return lambda: FastLane(self, fallback)

    async def drain(self, timeout_s: float) -> None:
        """Close idle connections now; busy ones close after their answer, or at timeout."""
        busy = {}
        for connection in list(self.connections):
            task = connection.stop()
            if task is not None:
                busy[task] = connection
        if busy:
            _, late = await asyncio.wait(busy, timeout=timeout_s)
            for task in late:
                task.cancel()
                busy[task].abort()


class FastLane(asyncio.Protocol):
    """One client connection, until it is handed to aiohttp or closed."""

    def __init__(self, lanes: FastLanes, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._lanes = lanes
        self._fallback = fallback
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._offset = 0
        self._task: asyncio.Task[None] | None = None  # answering after a latency or a hang
        self._done = False  # closing, closed or handed off: no more requests read here
        self._reading_paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register the connection with its lanes."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._lanes.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and cancel an answer still waiting."""
        self._done = True
        self._lanes.connections.discard(self)
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        """Buffer the bytes and serve the requests they complete."""
        if self._done:
            return
        self._buffer = self._buffer + data if self._buffer else data
        if self._task is None:
            self._serve()

    def eof_received(self) -> bool:
        """Let the transport close itself (no half-open connections)."""
        return False

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading requests."""
        if self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def resume_writing(self) -> None:
        """The client reads again: read requests again."""
        if self._transport is not None and self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- serving -------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer every whole request in the buffer, in order, as far as none must wait."""
        lanes, endpoint = self._lanes, self._lanes.endpoint
        answers: list[bytes] = []
        while True:
            request = frame(self._buffer, self._offset)
            if request is Framing.NEED_MORE:
                break
            if request is Framing.HAND_OFF:
                self._write(answers)
                self._hand_off()
                return
            self._offset = request.end
            endpoint.arrived()
            latency_s = endpoint.latency_s
            if latency_s is not None:
                self._write(answers)
                self._task = asyncio.create_task(self._answer_later(request, latency_s))
                return
            answer = self._answer(request)
            if isinstance(answer, Unanswered):
                self._write(answers)
                self._unanswered(answer)
                return
            answers.append(response_bytes(answer[0], answer[1], lanes.date.now()))
        self._compact()
        self._write(answers)

    async def _answer_later(self, request: SendRequest, latency_s: float) -> None:
        await asyncio.sleep(latency_s)
        answer = self._answer(request)
        if answer is Unanswered.HANG:
            await self._lanes.endpoint.hang()
        if isinstance(answer, Unanswered):
            self._close()
            return
        self._write([response_bytes(answer[0], answer[1], self._lanes.date.now())])
        self._task = None
        if self._done:  # stopped meanwhile
            self._close()
        else:
            self._serve()

    def _answer(self, request: SendRequest) -> Answer:
        try:
            return self._lanes.endpoint.answer(
                request.phone_number_id, request.authorization, request.body
            )
        except Exception:  # a bug in the mock: the client sees a broken connection
            log.exception("mock_fast_lane_failed")
            return Unanswered.DROP

    def _unanswered(self, answer: Unanswered) -> None:
        if answer is Unanswered.HANG:
            self._done = True
            self._task = asyncio.create_task(self._hang_then_close())
        else:
            self._close()

    async def _hang_then_close(self) -> None:
        await self._lanes.endpoint.hang()
        self._close()

    def _write(self, answers: list[bytes]) -> None:
        if not answers or self._transport is None:
            return
        self._lanes.served += len(answers)
        self._transport.write(answers[0] if len(answers) == 1 else b"".join(answers))

    def _compact(self) -> None:
        if self._offset == len(self._buffer):
            self._buffer = b""
        elif self._offset:
            self._buffer = self._buffer[self._offset :]
        self._offset = 0

    def _hand_off(self) -> None:
        """aiohttp's protocol takes the connection from the current request on."""
        transport = self._transport
        assert transport is not None
        rest = self._buffer[self._offset :]
        self._done = True
        self._buffer = b""
        self._lanes.connections.discard(self)
        self._lanes.handed_off += 1
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        protocol = self._fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(rest)

    # -- shutdown ------------------------------------------------------------------------

    def stop(self) -> asyncio.Task[None] | None:
        """Read no more requests; close now if idle, else return the task answering."""
        self._done = True
        if self._task is None:
            self._close()
        return self._task

    def _close(self) -> None:
        self._done = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close the connection at once, answers unsent (shutdown timeout)."""
        if self._transport is not None:
            self._transport.abort()


class FastLaneSite(web.BaseSite):
    """A TCP site whose connections start in the fast lane (aiohttp's TCPSite otherwise)."""

    def __init__(self, runner: web.BaseRunner, lanes: FastLanes, host: str, port: int) -> None:
        super().__init__(runner)
        self._lanes = lanes
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        """The site's URL, as aiohttp prints it."""
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        """Listen on the host and port, each connection starting in the fast lane."""
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._lanes.factory(server), self._host, self._port)
