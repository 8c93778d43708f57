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
