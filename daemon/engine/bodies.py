"""Webhook bodies read within bounds: one budget of bytes for every body being read before its
signature is known, a deadline for the whole body, and storage that gives its memory back.

An unauthenticated client must not be able to make the daemon hold memory: a body is read only
after its request passed the cheap checks (declared size, a well-formed signature header), and
only while `BodyBudget` has room for it (its declared length is reserved up front; a chunked
body reserves as it arrives); the signature is computed piece by piece as the body is read.
Bodies over `SMALL_BODY_BYTES` may fill only 7/8 of the budget, so a flood of large bodies
(Meta's are a few KB) leaves room for small ones. The lease is held until the request is done,
so replays of a valid body cannot pile up parsed copies either.

Large bodies are written into an anonymous memory map of their size rather than into Python
objects: unmapping gives the pages back to the system at once, whereas heap blocks freed by
many interleaved requests stay in glibc's arenas (the daemon's RSS stayed at 3.9 GB after a
600-connection attack on the old `request.read()`).
"""

from __future__ import annotations

import asyncio
import mmap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiohttp import StreamReader

from daemon.whatsapp.signature import StreamingVerifier

SMALL_BODY_BYTES: Final = 64 * 1024
LARGE_SHARE: Final = 7 / 8  # of the budget, for bodies over SMALL_BODY_BYTES


class BodyRefused(Exception):
    """The body cannot be read: `status` (408, 413, 503) and a short reason for the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BodyBudget:
    """Bytes of webhook bodies held at once, over every connection (single event loop)."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0

    def try_take(self, n: int, *, large: bool) -> bool:
        """Take `n` bytes if they fit (a large body only within its share); False otherwise."""
        ceiling = int(self.limit * LARGE_SHARE) if large else self.limit
        if self.used + n > ceiling:
            self.refused += 1
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give_back(self, n: int) -> None:
        """Return `n` bytes taken earlier."""
        self.used -= n
        assert self.used >= 0


@dataclass
class Body:
    """A body read whole: `data` (valid until the `read_body` context ends), whether the
    signature matched, and its SHA-256."""

    data: bytes | memoryview
    signed: bool
    digest: bytes


@asynccontextmanager
async def read_body(
    stream: StreamReader,
    declared: int | None,
    *,
    max_bytes: int,
    timeout_s: float,
    budget: BodyBudget,
    verifier: StreamingVerifier,
) -> AsyncIterator[Body]:
    """Read the body of a request whose Content-Length is `declared` (None: chunked) within
    `max_bytes`, `timeout_s` and the budget; raises `BodyRefused`. The body's memory and its
    share of the budget are held for the duration of the context."""
    if declared is not None and declared > max_bytes:
        raise BodyRefused(413, "body too large")
    large = declared is None or declared > SMALL_BODY_BYTES
    taken = 0
    if declared is not None:
        if not budget.try_take(declared, large=large):
            raise BodyRefused(503, "too many bodies in flight, try again later")
        taken = declared
    holder: _Holder = _MappedBody(declared or max_bytes) if large else _ChunkedBody()
    try:
        try:
            async with asyncio.timeout(timeout_s):
                size = 0
                while piece := await stream.readany():
                    size += len(piece)
                    if size > max_bytes:
                        raise BodyRefused(413, "body too large")
                    if size > taken:  # chunked: take as it comes
                        if not budget.try_take(size - taken, large=True):
                            raise BodyRefused(503, "too many bodies in flight, try again later")
                        taken = size
                    verifier.update(piece)
                    holder.append(piece)
        except TimeoutError:
            raise BodyRefused(408, "body not received in time") from None
        if declared is not None and size != declared:
            raise BodyRefused(400, "body shorter than its Content-Length")
        data = holder.data()
        try:
            yield Body(data, verifier.matches(), verifier.digest())
        finally:
            if isinstance(data, memoryview):
                data.release()
    finally:
        holder.close()
        budget.give_back(taken)


class _Holder:
    def append(self, piece: bytes) -> None:
        raise NotImplementedError

    def data(self) -> bytes | memoryview:
        raise NotImplementedError

    def close(self) -> None:
        """Free the memory."""


class _ChunkedBody(_Holder):
    """A small body: its pieces, joined once read."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def append(self, piece: bytes) -> None:
        self._pieces.append(piece)

    def data(self) -> bytes:
        return b"".join(self._pieces)

    def close(self) -> None:
        self._pieces.clear()


class _MappedBody(_Holder):
    """A large body in an anonymous map of `capacity` bytes (pages are committed as written)."""

    def __init__(self, capacity: int) -> None:
        self._map = mmap.mmap(-1, max(1, capacity))
        self._size = 0

    def append(self, piece: bytes) -> None:
        end = self._size + len(piece)
        self._map[self._size : end] = piece
        self._size = end

    def data(self) -> memoryview:
        return memoryview(self._map)[: self._size]

    def close(self) -> None:
        self._map.close()
