"""The mock's fast lane: what it frames itself, what it hands to aiohttp, and that both answer
the same bytes, in order, on real loopback connections."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.fastlane import FastLanes
from daemon.mockapi.http import MAX_BODY_BYTES, MAX_HEAD_BYTES, Framing, SendRequest, frame
from daemon.mockapi.server import LANES_KEY, RunningMock, start_mock_server
from daemon.whatsapp.client import api_session
from tests.helpers.mock import PHONE_ID, TOKEN, TYPICAL


def post(
    body: bytes = b"{}",
    *,
    target: bytes = b"/v23.0/" + PHONE_ID.encode() + b"/messages",
    headers: tuple[bytes, ...] | None = None,
    version: bytes = b"HTTP/1.1",
    method: bytes = b"POST",
) -> bytes:
    if headers is None:
        headers = (
            b"Host: 127.0.0.1",
            b"Authorization: Bearer " + TOKEN.encode(),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
        )
    return b"%s %s %s\r\n%s\r\n\r\n%s" % (method, target, version, b"\r\n".join(headers), body)


def send_bytes(to: str = "16505551234", callback: str = "c:42:1") -> bytes:
    return post(json.dumps({**TYPICAL, "to": to, "biz_opaque_callback_data": callback}).encode())


# -- framing ----------------------------------------------------------------------------------


def test_a_whole_send_is_framed_with_its_number_token_and_body() -> None:
    raw = post(b'{"a": 1}') + b"GET /next"
    request = frame(raw, 0)
    assert isinstance(request, SendRequest)
    assert request.phone_number_id == PHONE_ID
    assert request.authorization == b"Bearer " + TOKEN.encode()
    assert request.body == b'{"a": 1}'
    assert raw[request.end :] == b"GET /next"
    assert frame(raw, request.end) is Framing.NEED_MORE


def test_a_send_split_anywhere_needs_more_bytes_until_it_is_whole() -> None:
    raw = post(b'{"a": 1}')
    for cut in range(len(raw)):
        assert frame(raw[:cut], 0) is Framing.NEED_MORE, cut
    assert isinstance(frame(raw, 0), SendRequest)


def test_a_second_pipelined_request_is_framed_from_its_offset() -> None:
    first, second = post(b"[1]"), post(b"[2]", target=b"/v21.0/42/messages")
    one = frame(first + second, 0)
    assert isinstance(one, SendRequest)
    two = frame(first + second, one.end)
    assert isinstance(two, SendRequest)
    assert (two.phone_number_id, two.body, two.end) == ("42", b"[2]", len(first + second))


def test_header_names_are_case_insensitive_and_the_first_token_wins() -> None:
    raw = post(
        b"{}",
        headers=(
            b"host: x",
            b"content-length: 2",
            b"AUTHORIZATION:   Bearer a  ",
            b"Authorization: Bearer b",
        ),
    )
    request = frame(raw, 0)
    assert isinstance(request, SendRequest) and request.authorization == b"Bearer a"


def test_a_send_without_a_token_is_still_the_fast_lanes_to_refuse() -> None:
    request = frame(
        post(
            b"{}",
            headers=(
                b"Host: x",
                b"Content-Length: 2",
            ),
        ),
        0,
    )
    assert isinstance(request, SendRequest) and request.authorization == b""


def test_keep_alive_stays_in_the_fast_lane() -> None:
    raw = post(b"{}", headers=(b"Host: x", b"Content-Length: 2", b"Connection: Keep-Alive"))
    assert isinstance(frame(raw, 0), SendRequest)


@pytest.mark.parametrize(
    "raw",
    [
        post(method=b"GET"),
        post(method=b"PUT"),
        post(target=b"/_mock/stats"),
        post(target=b"/v23.0/1/messages?access_token=x"),
        post(target=b"/v23.0/1%32/messages"),
        post(target=b"/v23.0/1/messages/"),
        post(target=b"/23.0/1/messages"),
        post(version=b"HTTP/1.0"),
        b"POST  /v23.0/1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        post(headers=(b"Host: x", b"Transfer-Encoding: chunked")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"Expect: 100-continue")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"Upgrade: h2c")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"Connection: close")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"Connection: upgrade")),
        post(headers=(b"Host: x", b"Authorization: Bearer x")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"Host: x", b"Content-Length: 2")),
        post(headers=(b"Host: x", b"Content-Length: +2")),
        post(headers=(b"Host: x", b"Content-Length: 2 2")),
        post(headers=(b"Host: x", b"Content-Length: %d" % (MAX_BODY_BYTES + 1))),
        post(headers=(b"Host: x", b"Content-Length : 2")),
        post(headers=(b"Content-Length: 2",)),
        post(headers=(b"Host: x", b"Content-Length: 2", b" folded")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"no colon")),
        post(headers=(b"Host: x", b"Content-Length: 2", b"X-Big: " + b"x" * MAX_HEAD_BYTES)),
        b"POST /v23.0/1/messages HTTP/1.1\r\nX-Big: " + b"x" * MAX_HEAD_BYTES,
    ],
)
def test_everything_but_the_plain_send_shape_goes_to_aiohttp(raw: bytes) -> None:
    assert frame(raw, 0) is Framing.HAND_OFF


# -- on the wire --------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ")[1]), headers, body


@asynccontextmanager
async def connection(
    mock: RunningMock,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = mock.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


def lanes_of(mock: RunningMock) -> FastLanes:
    return mock.app[LANES_KEY]


async def test_the_daemons_own_session_is_served_in_the_fast_lane() -> None:
    """The requests aiohttp's client sends for the daemon have the fast lane's shape; if a
    client or aiohttp upgrade changed that, the mock would silently cost twice as much."""
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        async with api_session(TOKEN, timeout_s=5, max_connections=4) as session:
            for i in range(20):
                body = json.dumps({**TYPICAL, "to": f"1555000{i:04d}"}).encode()
                async with session.post(mock.messages_url(PHONE_ID), data=body) as response:
                    assert response.status == 200
                    assert (await response.json())["messages"][0]["message_status"] == "accepted"
        assert lanes_of(mock).served == 20 and lanes_of(mock).handed_off == 0
        assert len(mock.state.accepted) == 20


async def exchange(config: MockConfig, requests: list[bytes]) -> list[tuple[int, str, Any]]:
    """Each request on one connection of a fresh mock: status, content type, JSON body."""
    answers = []
    async with start_mock_server(config) as mock, connection(mock) as (reader, writer):
        for request in requests:
            writer.write(request)
            status, headers, body = await read_response(reader)
            assert set(headers) == {"content-type", "content-length", "date", "server"}
            payload = json.loads(body)
            for message in payload.get("messages", []):  # fresh random ids per mock
                assert message["id"].startswith("wamid.")
                message["id"] = "wamid.*"
            answers.append((status, headers["content-type"], payload))
    return answers


async def test_the_fast_lane_answers_exactly_what_aiohttp_answers() -> None:
    requests = [
        send_bytes(),
        send_bytes("15550001"),  # forced error
        post(b"{not json"),
        post(json.dumps({**TYPICAL, "type": "text"}).encode()),
        post(b"{}", headers=(b"Authorization: Bearer wrong", b"Host: x", b"Content-Length: 2")),
        send_bytes("16505550000"),
        send_bytes("16505550001"),  # over the limit of 2 a second
    ]
    config = MockConfig(
        token=TOKEN,
        seed=7,
        limit_per_second=2,
        faults=FaultConfig(forced_errors={"15550001": 131026}),
    )
    fast = await exchange(config, requests)
    plain = await exchange(replace(config, fast_lane=False), requests)
    assert fast == plain
    assert [status for status, _, _ in fast] == [200, 400, 400, 400, 401, 200, 429]


async def test_pipelined_sends_are_answered_in_order_from_one_write() -> None:
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        async with connection(mock) as (reader, writer):
            writer.write(b"".join(send_bytes(f"1555{i:07d}", f"c:{i}") for i in range(10)))
            inputs = [
                json.loads((await read_response(reader))[2])["contacts"][0]["input"]
                for _ in range(10)
            ]
        assert inputs == [f"1555{i:07d}" for i in range(10)]
        assert lanes_of(mock).served == 10


async def test_a_send_trickling_in_byte_by_byte_is_answered_once_whole() -> None:
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        async with connection(mock) as (reader, writer):
            for byte in send_bytes():
                writer.write(bytes([byte]))
                await writer.drain()
            status, _, _ = await read_response(reader)
        assert status == 200 and len(mock.state.accepted) == 1


async def test_a_connection_hands_off_to_aiohttp_at_the_first_other_request() -> None:
    """Sends, then the harness's stats and a query-string token on the same connection, all
    pipelined in one write: every answer arrives, in order, the last ones from aiohttp."""
    query_send = post(
        json.dumps(TYPICAL).encode(),
        target=b"/v23.0/" + PHONE_ID.encode() + b"/messages?access_token=" + TOKEN.encode(),
        headers=(b"Host: x", b"Content-Length: %d" % len(json.dumps(TYPICAL))),
    )
    stats = b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\n\r\n"
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        async with connection(mock) as (reader, writer):
            writer.write(send_bytes() + send_bytes() + stats + query_send + send_bytes())
            answers = [await read_response(reader) for _ in range(5)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 200, 200]
        assert json.loads(answers[2][2])["accepted"] == 2
        assert lanes_of(mock).served == 2 and lanes_of(mock).handed_off == 1
        assert len(mock.state.accepted) == 4


async def test_a_chunked_send_is_served_by_aiohttp() -> None:
    body = json.dumps(TYPICAL).encode()
    chunked = post(
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        headers=(
            b"Host: x",
            b"Authorization: Bearer " + TOKEN.encode(),
            b"Transfer-Encoding: chunked",
        ),
    )
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        async with connection(mock) as (reader, writer):
            writer.write(chunked)
            status, _, _ = await read_response(reader)
        assert status == 200 and lanes_of(mock).handed_off == 1


async def test_with_latency_each_connection_answers_in_order_after_it() -> None:
    config = MockConfig(token=TOKEN, faults=FaultConfig(latency_ms=80))
    async with start_mock_server(config) as mock:
        async with connection(mock) as (reader, writer):
            started = time.perf_counter()
            writer.write(send_bytes("15550000001") + send_bytes("15550000002"))
            first = json.loads((await read_response(reader))[2])
            second = json.loads((await read_response(reader))[2])
            elapsed = time.perf_counter() - started
        assert [first["contacts"][0]["input"], second["contacts"][0]["input"]] == [
            "15550000001",
            "15550000002",
        ]
        assert elapsed >= 0.16  # one connection, one request at a time, like aiohttp


async def test_a_dropped_send_closes_the_connection_after_the_earlier_answers() -> None:
    config = MockConfig(token=TOKEN, faults=FaultConfig(drop_rate=1.0, forced_errors={"1": 131026}))
    async with start_mock_server(config) as mock:
        async with connection(mock) as (reader, writer):
            writer.write(send_bytes("1") + send_bytes() + send_bytes())
            status, _, _ = await read_response(reader)
            assert status == 400  # the forced error, answered before the drop
            assert await reader.read() == b""  # then closed without an answer
        assert mock.state.outcomes["drop"] == 1 and mock.state.outcomes["requests"] == 2


async def test_shutdown_finishes_a_send_waiting_out_its_latency_and_releases_a_hang() -> None:
    config = MockConfig(token=TOKEN, faults=FaultConfig(latency_ms=300))
    async with start_mock_server(config) as mock:
        reader, writer = await asyncio.open_connection(*mock.base_url[7:].split(":"))
        writer.write(send_bytes())
        await asyncio.sleep(0.05)
    # Leaving the block shut the mock down: the send in its latency still got its answer.
    status, _, _ = await read_response(reader)
    assert status == 200 and await reader.read() == b""
    writer.close()

    config = MockConfig(token=TOKEN, faults=FaultConfig(timeout_rate=1.0, hang_s=30))
    started = time.perf_counter()
    async with start_mock_server(config) as mock:
        reader, writer = await asyncio.open_connection(*mock.base_url[7:].split(":"))
        writer.write(send_bytes())
        await asyncio.sleep(0.05)
    assert await reader.read() == b"" and time.perf_counter() - started < 5
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_at_shutdown() -> None:
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:
        reader, writer = await asyncio.open_connection(*mock.base_url[7:].split(":"))
        writer.write(send_bytes())
        assert (await read_response(reader))[0] == 200
    assert await reader.read() == b""
    writer.close()


async def test_aiohttp_serves_everything_with_the_fast_lane_off() -> None:
    async with start_mock_server(MockConfig(token=TOKEN, fast_lane=False)) as mock:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.post(mock.messages_url(PHONE_ID), json=TYPICAL) as response:
                assert response.status == 200
        assert lanes_of(mock).served == 0 and len(mock.state.accepted) == 1


async def test_a_send_still_waiting_at_the_drain_deadline_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("daemon.mockapi.server.FAST_LANE_DRAIN_S", 0.2)
    config = MockConfig(token=TOKEN, faults=FaultConfig(latency_ms=10_000))
    started = time.perf_counter()
    async with start_mock_server(config) as mock:
        reader, writer = await asyncio.open_connection(*mock.base_url[7:].split(":"))
        writer.write(send_bytes())
        await asyncio.sleep(0.05)
    assert time.perf_counter() - started < 3
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await read_response(reader)
    writer.close()


async def test_a_failing_answer_breaks_only_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with start_mock_server(MockConfig(token=TOKEN)) as mock:

        def broken(*args: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(mock.api, "answer", broken)
        async with connection(mock) as (reader, writer):
            writer.write(send_bytes())
            assert await reader.read() == b""
        monkeypatch.undo()
        async with connection(mock) as (reader, writer):
            writer.write(send_bytes())
            assert (await read_response(reader))[0] == 200
