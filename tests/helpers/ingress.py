"""Hostile webhook clients on raw sockets (bodies held one byte short, slowloris, idle
connections), a signed POST, and a sampler of a process's RSS."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil

from daemon.whatsapp.signature import SIGNATURE_HEADER, sign

FORGED_SIGNATURE = "sha256=" + "ab" * 32  # well formed, so the server must read the body
CHUNK = memoryview(bytes(64 * 1024))


def request_head(path: str, length: int, signature: str | None = FORGED_SIGNATURE) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if signature is not None:
        lines.append(f"{SIGNATURE_HEADER}: {signature}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class HeldBody:
    """One connection that sends all of a declared body but its last byte, then waits."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sent: int = 0
    answer: str | None = None  # the status line, or how the connection ended
    sender: asyncio.Task[None] | None = None
    listener: asyncio.Task[None] | None = None


@dataclass
class Attack:
    """Many held bodies at once; what the server answered each."""

    held: list[HeldBody] = field(default_factory=list)
    failed_to_connect: int = 0

    def answers(self) -> Counter[str]:
        return Counter(h.answer or "open" for h in self.held)

    def fully_sent(self, length: int) -> int:
        return sum(1 for h in self.held if h.sent == length - 1)

    async def close(self) -> None:
        for h in self.held:
            for task in (h.sender, h.listener):
                if task is not None:
                    task.cancel()
            h.writer.transport.abort()
        await asyncio.sleep(0)


async def hold_bodies(host: str, port: int, path: str, count: int, length: int) -> Attack:
    """Open `count` connections, each declaring `length` bytes and sending `length - 1`."""
    attack = Attack()
    head = request_head(path, length)

    async def open_one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            attack.failed_to_connect += 1
            return
        held = HeldBody(reader, writer)
        attack.held.append(held)
        held.listener = asyncio.create_task(_listen(held))
        held.sender = asyncio.create_task(_send_short(held, head, length - 1))

    await asyncio.gather(*(open_one() for _ in range(count)))
    return attack


async def _send_short(held: HeldBody, head: bytes, body_bytes: int) -> None:
    try:
        held.writer.write(head)
        while held.sent < body_bytes:
            n = min(len(CHUNK), body_bytes - held.sent)
            held.writer.write(CHUNK[:n])
            held.sent += n
            await held.writer.drain()
    except (OSError, RuntimeError):
        if held.answer is None:
            held.answer = "reset while sending"


async def _listen(held: HeldBody) -> None:
    try:
        line = await held.reader.readline()
    except OSError:
        held.answer = held.answer or "reset"
        return
    held.answer = line.decode(errors="replace").strip() or "closed"


async def wait_answers(attack: Attack, timeout_s: float) -> None:
    """Until every held connection was answered or closed by the server."""
    listeners = [h.listener for h in attack.held if h.listener is not None]
    if listeners:
        await asyncio.wait(listeners, timeout=timeout_s)


def signed_body(wamid: str, phone_number_id: str = "1000001") -> bytes:
    status = {
        "id": wamid,
        "status": "delivered",
        "timestamp": str(int(time.time())),
        "recipient_id": "16505551234",
    }
    change = {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
            "statuses": [status],
        },
    }
    document: dict[str, Any] = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [change]}],
    }
    return json.dumps(document).encode()


async def post_raw(host: str, port: int, path: str, body: bytes, app_secret: str) -> int:
    """One signed POST on a fresh connection (no client library in between); its status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request_head(path, len(body), sign(body, app_secret)) + body)
        await writer.drain()
        line = await reader.readline()
        return int(line.split()[1])
    finally:
        writer.transport.abort()


class RssSampler:
    """Samples a process's RSS every `every_s` in a thread (the test's event loop is busy)."""

    def __init__(self, pid: int, every_s: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._every_s = every_s
        self._stop = threading.Event()
        self.peak = 0
        self.last = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)
            self._stop.wait(self._every_s)

    def reset_peak(self) -> None:
        self.peak = self.last

    def __enter__(self) -> RssSampler:
        self.last = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_socket(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setblocking(False)
    return sock
