"""What a running campaign's sends need, worked out before its contacts are claimed.

Per campaign: the body builder (compiled once, per language; `core.template_build`), the
endpoint (`/marketing_messages` for MARKETING templates when `whatsapp.marketing_endpoint`
says so, decided once), and its header file's media id for the sending number, uploaded
once per number and again before Meta forgets it (`core.media`). It is also the daemon's
template gate: a campaign whose template is no longer APPROVED in the catalogue is paused
with the reason, before one more contact is claimed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from daemon.config import Config
from daemon.core.media import UploadedMedia, expires_at, renew_at, upload_due
from daemon.core.model import Campaign, CampaignId
from daemon.core.template_build import (
    MARKETING_MESSAGES,
    MESSAGES,
    BodyBuilder,
    compile_body,
    language_dispatch,
)
from daemon.core.template_spec import CampaignTemplate, TemplateSource
from daemon.db import sender_store, templates_store
from daemon.logs import get_logger
from daemon.whatsapp.management import GraphApiError, management_session, upload_media

log = get_logger(__name__)

CATALOGUE_CHECK_S = 2.0
"""How often a running campaign's template status is read again from the catalogue."""
UPLOAD_RETRY_S = 30.0
"""A header upload that failed transiently holds the campaign this long, then is retried."""

Clock = Callable[[], datetime]


@dataclass(slots=True)
class Prepared:
    """What the sends of one campaign use: the body builder and the endpoint."""

    build: BodyBuilder
    endpoint: str
    media_id: str | None
    renew_at: datetime | None  # when the header file must be uploaded again
    marketing: bool = False  # built for a MARKETING template (Meta may change its category)


class CampaignPreparer:
    """`prepare(conn, campaign)` before claiming a campaign's contacts: its `Prepared`, or None
    when it may not send now (paused or held here, with the reason)."""

    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._prepared: dict[CampaignId, Prepared] = {}
        self._checked_at: dict[CampaignId, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self.uploads = 0

    async def prepare(self, conn: asyncpg.Connection, campaign: Campaign) -> Prepared | None:
        """The campaign's `Prepared` (cached; rebuilt when its media id changes)."""
        spec = campaign.template_spec
        if spec.source is TemplateSource.CATALOGUE and not await self._catalogue_allows(
            conn, campaign, spec
        ):
            return None
        prepared = self._prepared.get(campaign.id)
        now = self._clock()
        if (
            prepared is not None
            and prepared.marketing == spec.marketing
            and (prepared.renew_at is None or now < prepared.renew_at)
        ):
            return prepared
        media: UploadedMedia | None = None
        if spec.header_file is not None:
            media = await self._media(conn, campaign, now)
            if media is None:
                return None
        try:
            prepared = self._compile(spec, media)
        except ValueError as exc:  # a binding the builder cannot serve (a bug, or old data)
            await self._pause(conn, campaign, f"cannot build the template's body: {exc}")
            return None
        self._prepared[campaign.id] = prepared
        return prepared

    def forget(self, campaign_id: CampaignId) -> None:
        """Drop what is cached for a campaign (it was paused, canceled or finished)."""
        self._prepared.pop(campaign_id, None)
        self._checked_at.pop(campaign_id, None)

    async def close(self) -> None:
        """Close the upload session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the template gate --------------------------------------------------------------

    async def _catalogue_allows(
        self, conn: asyncpg.Connection, campaign: Campaign, spec: CampaignTemplate
    ) -> bool:
        mono = time.monotonic()
        if mono - self._checked_at.get(campaign.id, -CATALOGUE_CHECK_S) < CATALOGUE_CHECK_S:
            return True
        languages = list(spec.definitions)
        statuses = await templates_store.template_statuses(conn, spec.waba_id, spec.name, languages)
        for language in languages:
            status = statuses.get(language)
            if status != "APPROVED":
                shown = status or "no longer in the catalogue"
                await self._pause(
                    conn,
                    campaign,
                    f"template {spec.name} ({language}) is {shown}, not APPROVED"
                    " (catalogue as of the last `wa-sender templates sync` or Meta's webhook)",
                    by="meta",
                )
                return False
        self._checked_at[campaign.id] = mono
        return True

    # -- the header file ----------------------------------------------------------------

    async def _media(
        self, conn: asyncpg.Connection, campaign: Campaign, now: datetime
    ) -> UploadedMedia | None:
        number = campaign.phone_number_id
        current = await templates_store.campaign_media(conn, campaign.id, number)
        if not upload_due(current, now):
            return current
        async with self._lock, conn.transaction():
            await templates_store.media_upload_lock(conn, campaign.id, number)
            current = await templates_store.campaign_media(conn, campaign.id, number)
            if not upload_due(current, now):  # another daemon uploaded it meanwhile
                return current
            stored = await templates_store.header_file(conn, campaign.id)
            if stored is None:
                await self._pause(conn, campaign, "its header file is missing from the database")
                return None
            try:
                media_id = await upload_media(
                    self._upload_session(),
                    self._config.whatsapp.base_url,
                    self._config.whatsapp.api_version,
                    number,
                    stored.filename,
                    stored.mime_type,
                    stored.data,
                )
            except GraphApiError as exc:
                if exc.transient:
                    until = now + timedelta(seconds=UPLOAD_RETRY_S)
                    await sender_store.set_campaign_hold(
                        conn, [campaign.id], f"header upload failed, retrying: {exc}", until
                    )
                    log.warning("header_upload_failed", campaign_id=campaign.id, error=str(exc))
                else:
                    await self._pause(conn, campaign, f"header file refused: {exc}")
                return None
            uploaded = UploadedMedia(number, media_id, now, expires_at(now))
            await templates_store.save_campaign_media(
                conn, campaign.id, number, media_id, uploaded.uploaded_at, uploaded.expires_at
            )
        self.uploads += 1
        log.info(
            "header_uploaded",
            campaign_id=campaign.id,
            phone_number_id=number,
            media_id=media_id,
            renew_at=renew_at(uploaded).isoformat(),
        )
        return uploaded

    def _upload_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            whatsapp = self._config.whatsapp
            self._session = management_session(
                whatsapp.access_token, timeout_s=max(60.0, whatsapp.request_timeout_s)
            )
        return self._session

    # -- the builder --------------------------------------------------------------------

    def _compile(self, spec: CampaignTemplate, media: UploadedMedia | None) -> Prepared:
        endpoint = (
            MARKETING_MESSAGES
            if self._config.whatsapp.marketing_endpoint == MARKETING_MESSAGES and spec.marketing
            else MESSAGES
        )
        media_id = media.media_id if media is not None else None
        builders = {
            language: compile_body(spec, language, media_id=media_id, endpoint=endpoint)
            for language in spec.definitions
        }
        default = builders[spec.language]
        build = default if len(builders) == 1 else language_dispatch(builders, default)
        return Prepared(
            build, endpoint, media_id, renew_at(media) if media else None, spec.marketing
        )

    async def _pause(
        self, conn: asyncpg.Connection, campaign: Campaign, reason: str, by: str = "daemon"
    ) -> None:
        self.forget(campaign.id)
        if await sender_store.pause_campaign_fatal(conn, campaign.id, reason, by):
            log.error("campaign_halted", campaign_id=campaign.id, reason=reason)
