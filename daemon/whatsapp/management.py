"""The Cloud API's management calls: the template catalogue and media upload.

`fetch_templates` reads `GET /{version}/{waba_id}/message_templates` page by page (cursor
paging, following `paging.next`); `upload_media` posts a file to `POST /{version}/
{phone_number_id}/media` (multipart form: messaging_product, type, file) and returns its
media id. Both use a session of their own (`management_session`): the send session's
JSON Content-Type header would break multipart bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from daemon.core.outcomes import OutcomeKind, classify_error_object
from daemon.errors import WaSenderError

TEMPLATE_FIELDS: Final = "name,language,status,category,parameter_format,components"
PAGE_LIMIT: Final = 100
MAX_PAGES: Final = 1000


class GraphApiError(WaSenderError):
    """A management call that failed: its HTTP status and Graph error, and whether trying
    again later may succeed (`transient`)."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.transient = transient


def management_session(access_token: str, *, timeout_s: float) -> aiohttp.ClientSession:
    """A session for management calls: bearer token, no default Content-Type."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"Authorization": f"Bearer {access_token}"},
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def fetch_templates(
    session: aiohttp.ClientSession,
    base_url: str,
    api_version: str,
    waba_id: str,
    *,
    limit: int = PAGE_LIMIT,
) -> list[dict[str, Any]]:
    """Every template of the WABA, all pages; GraphApiError when a page fails."""
    first = URL(f"{base_url.rstrip('/')}/{api_version}/{waba_id}/message_templates")
    url: URL | None = first.with_query({"fields": TEMPLATE_FIELDS, "limit": str(limit)})
    templates: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        assert url is not None
        document = await _get_json(session, url, what=f"templates of WABA {waba_id}")
        data = document.get("data")
        if not isinstance(data, list):
            raise GraphApiError(f"templates of WABA {waba_id}: the answer has no data list")
        templates += [entry for entry in data if isinstance(entry, dict)]
        url = _next_page(document, first)
        if url is None or not data:
            return templates
    raise GraphApiError(f"templates of WABA {waba_id}: more than {MAX_PAGES} pages")


def _next_page(document: Mapping[str, Any], first: URL) -> URL | None:
    paging = document.get("paging")
    if not isinstance(paging, Mapping):
        return None
    following = paging.get("next")
    if not isinstance(following, str) or not following:
        return None
    url = URL(following)
    if url.host != first.host or url.port != first.port:  # never send the token elsewhere
        cursors = paging.get("cursors")
        after = cursors.get("after") if isinstance(cursors, Mapping) else None
        if not isinstance(after, str):
            return None
        return first.with_query({"fields": TEMPLATE_FIELDS, "after": after})
    return url


async def upload_media(
    session: aiohttp.ClientSession,
    base_url: str,
    api_version: str,
    phone_number_id: str,
    filename: str,
    mime_type: str,
    data: bytes,
) -> str:
    """Upload a file for a sending number; its media id. GraphApiError when refused."""
    url = URL(f"{base_url.rstrip('/')}/{api_version}/{phone_number_id}/media")
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", mime_type)
    form.add_field("file", data, filename=filename, content_type=mime_type)
    what = f"upload of {filename} for {phone_number_id}"
    try:
        async with session.post(url, data=form) as response:
            payload = await response.read()
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unreachable(what, url, exc) from exc
    document = _document(payload)
    if status == 200 and isinstance(document.get("id"), str) and document["id"]:
        media_id: str = document["id"]
        return media_id
    raise _refused(what, status, document)


async def _get_json(session: aiohttp.ClientSession, url: URL, *, what: str) -> dict[str, Any]:
    try:
        async with session.get(url) as response:
            payload = await response.read()
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _unreachable(what, url, exc) from exc
    document = _document(payload)
    if status != 200:
        raise _refused(what, status, document)
    return document


def _unreachable(what: str, url: URL, exc: BaseException) -> GraphApiError:
    """A call that got no answer (transient): where to, and why, without the query."""
    reason = str(exc)
    if not reason and isinstance(exc, TimeoutError):
        reason = "no answer in time"
    shown = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return GraphApiError(f"{what}: no answer from {url.origin()} ({shown})", transient=True)


def _document(payload: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _refused(what: str, status: int, document: Mapping[str, Any]) -> GraphApiError:
    error = document.get("error")
    error = error if isinstance(error, Mapping) else {}
    outcome = classify_error_object(error, attempt=1, http_status=status)
    transient = outcome.kind in (OutcomeKind.TRANSIENT, OutcomeKind.THROTTLED)
    code = f" code {outcome.error_code}" if outcome.error_code is not None else ""
    title = f": {outcome.error_title}" if outcome.error_title else ""
    details = f" ({outcome.error_details})" if outcome.error_details else ""
    return GraphApiError(
        f"{what}: HTTP {status}{code}{title}{details}",
        http_status=status,
        code=outcome.error_code,
        transient=transient,
    )
