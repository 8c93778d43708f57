"""HMAC-SHA256 signatures of webhook bodies (``X-Hub-Signature-256``).

Meta signs the exact raw bytes it posts with the app secret; receivers must verify those bytes
as received, never a re-serialised JSON document.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(body: bytes, app_secret: str) -> str:
    """The header value for ``body``: ``"sha256=<lowercase hex>"``."""
    if not app_secret:
        raise ValueError("app secret must not be empty")
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(body: bytes, header_value: str | None, app_secret: str) -> bool:
    """True when ``header_value`` is the signature of ``body``; constant-time comparison.

    A missing or malformed header, or an empty app secret, never verifies.
    """
    if not header_value or not app_secret:
        return False
    prefix, _, given = header_value.strip().partition("=")
    if prefix.lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


class StreamingVerifier:
    """The signature check of a body that arrives in pieces: `update` with each piece as read,
    then `matches`. Nothing of the body is kept; `digest` is its SHA-256 (the replay key).

    `parse_header` first: a header that cannot be a signature is refused before any of the
    body is read."""

    __slots__ = ("_expected", "_mac", "_sha")

    def __init__(self, app_secret: str, given_hex: str) -> None:
        if not app_secret:
            raise ValueError("app secret must not be empty")
        self._mac = hmac.new(app_secret.encode(), digestmod=hashlib.sha256)
        self._sha = hashlib.sha256()
        self._expected = given_hex

    def update(self, piece: bytes | bytearray | memoryview) -> None:
        """Feed the next piece of the raw body."""
        self._mac.update(piece)
        self._sha.update(piece)

    def matches(self) -> bool:
        """Whether the body fed so far is the one the header signs (constant-time compare)."""
        return hmac.compare_digest(self._mac.hexdigest().encode(), self._expected.encode())

    def digest(self) -> bytes:
        """SHA-256 of the body fed so far."""
        return self._sha.digest()


_HEX = frozenset("0123456789abcdef")


def parse_header(header_value: str | None) -> str | None:
    """The lowercase hex MAC of a well-formed ``sha256=<64 hex>`` header, else None."""
    if not header_value:
        return None
    prefix, _, given = header_value.strip().partition("=")
    given = given.lower()
    if prefix.lower() != "sha256" or len(given) != 64 or not _HEX.issuperset(given):
        return None
    return given
