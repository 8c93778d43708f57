"""Reading a media upload (`POST /{phone_number_id}/media`) as Graph does: a multipart form
with `messaging_product=whatsapp`, the file's `type` and the `file` itself, within the size
limit of its kind. Streamed part by part, never more than the limit in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import BodyPartReader, web

from daemon.mockapi.validation import RequestProblem

# Meta's limits per media kind (Cloud API supported media types).
MAX_BYTES: Final = {"image": 5 * 1024**2, "video": 16 * 1024**2, "audio": 16 * 1024**2}
DOCUMENT_MAX_BYTES: Final = 100 * 1024**2
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Upload:
    """A file the mock accepted: its name, type and size (the bytes are not kept)."""

    filename: str
    mime_type: str
    size: int


async def read_upload(request: web.Request) -> Upload | RequestProblem:
    """The upload in the request, or what Graph would refuse it with."""
    if not request.content_type.startswith("multipart/"):
        return RequestProblem(100, "The request must be multipart/form-data.")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    upload: Upload | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            return RequestProblem(100, "Nested multipart bodies are not supported.")
        if part.name == "file":
            mime_type = part.headers.get("Content-Type", "application/octet-stream")
            limit = MAX_BYTES.get(mime_type.partition("/")[0], DOCUMENT_MAX_BYTES)
            size = 0
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > limit:
                    return RequestProblem(131053, f"File is over the {limit}-byte limit.")
            upload = Upload(part.filename or "file", mime_type, size)
        elif part.name:
            fields[part.name] = (await part.text())[:1000]
    if fields.get("messaging_product") != "whatsapp":
        return RequestProblem(100, "The parameter messaging_product must be set to whatsapp.")
    if upload is None:
        return RequestProblem(131008, "The parameter file is required.")
    if upload.size == 0:
        return RequestProblem(131053, "The file is empty.")
    declared = fields.get("type")
    if declared is not None and declared != upload.mime_type:
        return RequestProblem(
            131053, f"type {declared} does not match the file ({upload.mime_type})."
        )
    return upload
