"""The template catalogue and campaign header files as named operations (SQL in
sql/queries/templates.sql)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from daemon.core.media import UploadedMedia
from daemon.core.templates import TemplateDef, TemplateError, parse_template, template_document
from daemon.db.sql import query


@dataclass(frozen=True)
class SyncResult:
    """What a catalogue sync changed: templates stored, and those no longer listed."""

    stored: int
    unlisted: list[tuple[str, str]]


@dataclass(frozen=True)
class HeaderFileData:
    """A campaign's header file, bytes included."""

    filename: str
    mime_type: str
    data: bytes


async def save_catalogue(
    conn: asyncpg.Connection, waba_id: str, documents: Sequence[dict[str, object]]
) -> SyncResult:
    """Store a complete listing of the WABA's templates (one transaction); those the listing
    lacks become DELETED. Entries that cannot be parsed are stored too, as Meta sent them."""
    seen: list[tuple[str, str]] = []
    async with conn.transaction():
        for document in documents:
            name, language = str(document.get("name", "")), str(document.get("language", ""))
            if not name or not language:
                continue
            seen.append((name, language))
            await conn.execute(
                query("save_template"),
                waba_id,
                name,
                language,
                _str_or_none(document.get("id")),
                str(document.get("status") or "").upper(),
                str(document.get("category") or "").upper(),
                str(document.get("parameter_format") or "POSITIONAL").upper(),
                document,
            )
        rows = await conn.fetch(
            query("mark_unlisted_templates"),
            waba_id,
            [name for name, _ in seen],
            [language for _, language in seen],
        )
    return SyncResult(len(seen), [(r["name"], r["language"]) for r in rows])


async def save_templates(
    conn: asyncpg.Connection, waba_id: str, templates: Sequence[TemplateDef]
) -> None:
    """Store parsed templates as catalogue entries (offline catalogues, tests)."""
    await save_catalogue(conn, waba_id, [template_document(t) for t in templates])


async def list_catalogue(conn: asyncpg.Connection, waba_id: str = "") -> list[asyncpg.Record]:
    """Every catalogue row (of `waba_id`, '' for any), by name and language."""
    return list(await conn.fetch(query("list_templates"), waba_id))


async def templates_named(
    conn: asyncpg.Connection, name: str, waba_id: str = ""
) -> list[TemplateDef]:
    """The catalogue's entries of one template name, every language (unparsable ones left
    out: they cannot be sent)."""
    out = []
    for record in await conn.fetch(query("templates_named"), waba_id, name):
        try:
            out.append(parse_template(record["document"]))
        except TemplateError:
            continue
    return out


async def catalogue_size(conn: asyncpg.Connection, waba_id: str = "") -> int:
    """How many catalogue entries there are (0: never synced)."""
    count: int = await conn.fetchval(query("catalogue_size"), waba_id)
    return count


async def template_statuses(
    conn: asyncpg.Connection, waba_id: str, name: str, languages: Sequence[str]
) -> dict[str, str]:
    """Each listed language's catalogue status (missing languages are absent)."""
    rows = await conn.fetch(query("template_statuses"), waba_id, name, list(languages))
    return {r["language"]: r["status"] for r in rows}


async def save_header_file(
    conn: asyncpg.Connection, campaign_id: int, filename: str, mime_type: str, data: bytes
) -> None:
    """Keep a campaign's header file."""
    digest = hashlib.sha256(data).hexdigest()
    await conn.execute(query("save_header_file"), campaign_id, filename, mime_type, digest, data)


async def header_file(conn: asyncpg.Connection, campaign_id: int) -> HeaderFileData | None:
    """A campaign's header file, None if it has none."""
    record = await conn.fetchrow(query("header_file_data"), campaign_id)
    if record is None:
        return None
    return HeaderFileData(record["filename"], record["mime_type"], bytes(record["data"]))


async def campaign_media(
    conn: asyncpg.Connection, campaign_id: int, phone_number_id: str
) -> UploadedMedia | None:
    """The header file's current upload for a sending number."""
    record = await conn.fetchrow(query("campaign_media"), campaign_id, phone_number_id)
    if record is None:
        return None
    return UploadedMedia(
        record["phone_number_id"], record["media_id"], record["uploaded_at"], record["expires_at"]
    )


async def media_upload_lock(
    conn: asyncpg.Connection, campaign_id: int, phone_number_id: str
) -> None:
    """Serialise uploads of one campaign's file for one number across daemons (held until the
    transaction ends)."""
    await conn.execute(query("media_upload_lock"), campaign_id, phone_number_id)


async def save_campaign_media(
    conn: asyncpg.Connection,
    campaign_id: int,
    phone_number_id: str,
    media_id: str,
    uploaded_at: datetime,
    expires_at: datetime,
) -> None:
    """Record an upload (replacing the previous id for that number)."""
    await conn.execute(
        query("save_campaign_media"),
        campaign_id,
        phone_number_id,
        media_id,
        uploaded_at,
        expires_at,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
