"""The Cloud API client: one shared aiohttp session, one POST per message, outcome classified."""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp
from yarl import URL

from daemon.core.outcomes import (
    Outcome,
    classify_response,
    classify_transport_error,
    parse_retry_after,
)

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
"""Meta's send answers are under 1 KB, its error envelopes a few KB."""

# Failures that happen before the request goes out: the API cannot have seen the message.
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.InvalidURL,
)


def api_session(
    access_token: str, *, timeout_s: float, max_connections: int
) -> aiohttp.ClientSession:
    """The HTTP session for Cloud API sends (the load test's floor uses it too): keep-alive
    connections up to `max_connections`, bearer token, no cookie jar (the API sets none)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"},
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class CloudApiClient:
    """POST `{base_url}/{api_version}/{phone_number_id}/messages` (or `/marketing_messages`,
    the Marketing Messages API) with a bearer token."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        access_token: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 100,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._prefix = f"{base_url.rstrip('/')}/{api_version}/"
        self._access_token = access_token
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._urls: dict[tuple[str, str], URL] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CloudApiClient:
        self._session = api_session(
            self._access_token, timeout_s=self._timeout_s, max_connections=self._max_connections
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, phone_number_id: str, body: bytes, *, attempt: int, endpoint: str = "messages"
    ) -> Outcome:
        """Send one message to `endpoint` (`messages` or `marketing_messages`); every failure
        becomes an Outcome, nothing raises but cancellation."""
        assert self._session is not None, "use CloudApiClient as an async context manager"
        key = (phone_number_id, endpoint)
        url = self._urls.get(key)
        if url is None:  # parsed once per number and endpoint, not per request
            url = self._urls[key] = URL(f"{self._prefix}{phone_number_id}/{endpoint}")
        try:
            # Redirects are never followed: a 3xx would carry the token and the message to
            # whatever origin it names (see classify_response).
            async with self._session.post(url, data=body, allow_redirects=False) as response:
                status = response.status
                payload = await _bounded_body(response, self._max_response_bytes)
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"))
                    if status >= 400
                    else None
                )
                return classify_response(
                    status, payload, attempt=attempt, retry_after_s=retry_after
                )
        except _NOT_SENT_ERRORS as exc:
            return classify_transport_error(type(exc).__name__)
        except TimeoutError:  # the request went out (a connect timeout is caught above)
            return classify_transport_error("timeout after the request was sent", sent=True)
        except aiohttp.ServerDisconnectedError:
            return classify_transport_error("server disconnected", sent=True)
        except aiohttp.ClientPayloadError:
            return classify_transport_error("truncated response body", sent=True)
        except (aiohttp.ClientError, OSError) as exc:
            return classify_transport_error(type(exc).__name__, sent=True)
        except asyncio.IncompleteReadError:
            return classify_transport_error("incomplete response", sent=True)


async def _bounded_body(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body, or None when it is longer than `limit` (the connection is then
    closed instead of drained: a 50 MB answer is never read whole)."""
    length = response.content_length
    if length is not None:
        if length > limit:
            response.close()
            return None
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.readany():
        size += len(chunk)
        if size > limit:
            response.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)
