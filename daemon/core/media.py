"""When a campaign's header file must be uploaded (again) for a sending number.

Meta keeps an uploaded media id for 30 days; a campaign that runs (or waits) longer must
upload its file again before the id expires. Pure: the time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

MEDIA_LIFETIME: Final = timedelta(days=30)
RENEW_BEFORE: Final = timedelta(days=1)
"""Upload again this long before the id expires: a send claimed just before the renewal
still goes out with a valid id."""


@dataclass(frozen=True)
class UploadedMedia:
    """A header file uploaded for one sending number: its media id and when that expires."""

    phone_number_id: str
    media_id: str
    uploaded_at: datetime
    expires_at: datetime


def expires_at(uploaded_at: datetime) -> datetime:
    """When a media id uploaded at `uploaded_at` stops being usable."""
    return uploaded_at + MEDIA_LIFETIME


def upload_due(uploaded: UploadedMedia | None, now: datetime) -> bool:
    """Whether the file must be uploaded before the next send: never uploaded for this
    number, or its id expires within `RENEW_BEFORE`."""
    return uploaded is None or now >= uploaded.expires_at - RENEW_BEFORE


def renew_at(uploaded: UploadedMedia) -> datetime:
    """When `upload_due` turns true for this upload."""
    return uploaded.expires_at - RENEW_BEFORE
