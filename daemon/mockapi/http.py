"""HTTP/1.1 as the mock's fast lane reads and writes it: the framing of a plain send request
and the bytes of a JSON response. Pure: bytes in, bytes or a verdict out, no I/O.

A plain send is a keep-alive ``POST /{version}/{phone_number_id}/messages`` with a
Content-Length body and no query string; anything else is aiohttp's to serve (``HAND_OFF``).
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

from aiohttp.http import SERVER_SOFTWARE

# aiohttp's own limits: longer heads and larger bodies are its to refuse (400, 413).
MAX_HEAD_BYTES = 8190
MAX_BODY_BYTES = 1024**2

_TARGET = re.compile(rb"/v\d+\.\d+/([0-9A-Za-z_.\-]+)/messages")
_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,10}")
_HANDED_TO_AIOHTTP = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


class Framing(Enum):
    """Why `frame` found no request: more bytes needed, or not the fast lane's shape."""

    NEED_MORE = "need more bytes"
    HAND_OFF = "not the fast lane's shape"


@dataclass(slots=True)
class SendRequest:
    """One framed send request: its number, Authorization header and body."""

    phone_number_id: str
    authorization: bytes  # the header's value as sent, b"" when there is none
    body: bytes
    end: int  # offset just past the request in the buffer it was read from


def frame(buffer: bytes, start: int) -> SendRequest | Framing:
    """The send request at `buffer[start:]`, if it has the fast lane's shape and is whole."""
    head_end = buffer.find(b"\r\n\r\n", start, start + MAX_HEAD_BYTES + 4)
    if head_end < 0:
        return Framing.HAND_OFF if len(buffer) - start > MAX_HEAD_BYTES else Framing.NEED_MORE
    lines = buffer[start:head_end].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[0] != b"POST" or request_line[2] != b"HTTP/1.1":
        return Framing.HAND_OFF
    target = _TARGET.fullmatch(request_line[1])
    if target is None:
        return Framing.HAND_OFF
    length: bytes | None = None
    authorization: bytes | None = None
    host = False  # aiohttp refuses HTTP/1.1 without one (400)
    for line in lines[1:]:
        header = _HEADER.fullmatch(line)
        if header is None:
            return Framing.HAND_OFF
        name = header[1].lower()
        if name == b"content-length":
            if length is not None:
                return Framing.HAND_OFF
            length = header[2]
        elif name == b"authorization":
            if authorization is None:  # aiohttp's handler reads the first one
                authorization = header[2]
        elif name == b"host":
            host = True
        elif name == b"connection":
            if header[2].lower() != b"keep-alive":
                return Framing.HAND_OFF
        elif name in _HANDED_TO_AIOHTTP:
            return Framing.HAND_OFF
    if not host or length is None or _DIGITS.fullmatch(length) is None:
        return Framing.HAND_OFF
    size = int(length)
    if size > MAX_BODY_BYTES:
        return Framing.HAND_OFF
    body_start = head_end + 4
    end = body_start + size
    if len(buffer) < end:
        return Framing.NEED_MORE
    return SendRequest(target[1].decode("ascii"), authorization or b"", buffer[body_start:end], end)


class HttpDate:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        """The current Date header value (bytes, cached for the second)."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._value


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus}
_SERVER = SERVER_SOFTWARE.encode("ascii")


_RESPONSE = (
    b"%sContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\nServer: %s\r\n\r\n%s"
)


def response_bytes(status: int, body: bytes, date: bytes) -> bytes:
    """A JSON response with the headers aiohttp's handler sends."""
    return _RESPONSE % (_STATUS_LINES[status], len(body), date, _SERVER, body)
