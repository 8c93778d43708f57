"""The mock's management endpoints, beside the send ones: the WABA's template catalogue
(``GET /{version}/{waba_id}/message_templates``, cursor-paged) and media uploads
(``POST /{version}/{phone_number_id}/media``), answered and refused as Graph does."""

from __future__ import annotations

import hmac
import random
from typing import Any

import orjson
from aiohttp import web

from daemon.mockapi.catalogue import DEFAULT_PAGE_LIMIT, Catalogue
from daemon.mockapi.config import MockConfig
from daemon.mockapi.media import read_upload
from daemon.mockapi.replies import Replies
from daemon.mockapi.state import MockState, UploadedFile
from daemon.mockapi.validation import RequestProblem

_JSON = "application/json"


class ManagementEndpoints:
    """The catalogue listing and media uploads of one mock (its config, state, catalogue)."""

    def __init__(
        self,
        config: MockConfig,
        state: MockState,
        catalogue: Catalogue,
        replies: Replies,
        media_ids: random.Random,
    ) -> None:
        self._config = config
        self._state = state
        self._catalogue = catalogue
        self._replies = replies
        self._media_ids = media_ids
        self._auth = f"Bearer {config.token}".encode()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if header is None:
            token = request.query.get("access_token")
            header = f"Bearer {token}" if token else ""
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._auth)

    async def list_templates(self, request: web.Request) -> web.Response:
        """``GET /{version}/{waba_id}/message_templates``: the catalogue, cursor-paged
        (``limit``, ``after``; ``fields`` picks the fields of each entry)."""
        if not self._authorized(request):
            return _response(self._replies.invalid_token())
        waba_id = request.match_info["waba_id"]
        if waba_id != self._config.waba_id:
            return _response(self._replies.unknown_object(waba_id, "get"))
        try:
            limit = int(request.query.get("limit", str(DEFAULT_PAGE_LIMIT)))
        except ValueError:
            return _response(self._replies.error(100, "Invalid parameter limit."))
        after = request.query.get("after")
        fields_raw = request.query.get("fields")
        fields = [f.strip() for f in fields_raw.split(",") if f.strip()] if fields_raw else None
        page = self._catalogue.page(limit, after, fields)
        if self._catalogue.has_more(after, limit):
            cursor = page["paging"]["cursors"]["after"]
            page["paging"]["next"] = str(request.url.update_query({"after": cursor}))
        self._state.outcomes["template_pages"] += 1
        return _json(page)

    async def upload_media(self, request: web.Request) -> web.Response:
        """``POST /{version}/{phone_number_id}/media`` (multipart: messaging_product, type,
        file): ``{"id": MEDIA_ID}``; counted per number in ``uploads``."""
        if not self._authorized(request):
            return _response(self._replies.invalid_token())
        number = request.match_info["phone_number_id"]
        known_numbers = self._config.phone_number_ids
        if known_numbers is not None and number not in known_numbers:
            return _response(self._replies.unknown_object(number, "post"))
        upload = await read_upload(request)
        if isinstance(upload, RequestProblem):
            return _response(self._replies.invalid(upload))
        media_id = str(self._media_ids.randrange(10**15, 10**16))
        self._state.uploads[number] += 1
        self._state.media[media_id] = UploadedFile(
            number, upload.filename, upload.mime_type, upload.size
        )
        return _json({"id": media_id})


def _response(answer: tuple[int, bytes]) -> web.Response:
    status, body = answer
    return web.Response(body=body, status=status, content_type=_JSON)


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=200, content_type=_JSON)
