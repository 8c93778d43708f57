"""The Cloud API client: one shared aiohttp session, one POST per message, outcome classified."""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp

from daemon.core.outcomes import Outcome, classify_response, classify_transport_error


class CloudApiClient:
    """POST `{base_url}/{api_version}/{phone_number_id}/messages` with a bearer token."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        access_token: str,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 100,
    ) -> None:
        self._prefix = f"{base_url.rstrip('/')}/{api_version}/"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CloudApiClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers=self._headers
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

    async def send(self, phone_number_id: str, body: bytes, *, attempt: int) -> Outcome:
        """Send one message; every failure becomes an Outcome, nothing raises but cancellation."""
        assert self._session is not None, "use CloudApiClient as an async context manager"
        url = f"{self._prefix}{phone_number_id}/messages"
        try:
            async with self._session.post(url, data=body) as response:
                payload = await response.read()
                return classify_response(response.status, payload, attempt=attempt)
        except TimeoutError:
            return classify_transport_error("timeout")
        except aiohttp.ServerDisconnectedError:
            return classify_transport_error("server disconnected")
        except (aiohttp.ClientError, OSError) as exc:
            return classify_transport_error(type(exc).__name__)
        except asyncio.IncompleteReadError:
            return classify_transport_error("incomplete response")
