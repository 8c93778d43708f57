"""When a campaign's header file is uploaded again: never uploaded for this number, or its id
expires within a day (Meta keeps media ids 30 days). The time is an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.core.media import MEDIA_LIFETIME, UploadedMedia, expires_at, renew_at, upload_due

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
UPLOADED = UploadedMedia("106540352242922", "4490709327384033", T0, expires_at(T0))


def test_a_media_id_lives_thirty_days() -> None:
    assert timedelta(days=30) == MEDIA_LIFETIME
    assert UPLOADED.expires_at == T0 + timedelta(days=30)
    assert renew_at(UPLOADED) == T0 + timedelta(days=29)


@pytest.mark.parametrize(
    ("uploaded", "now", "due"),
    [
        (None, T0, True),
        (UPLOADED, T0, False),
        (UPLOADED, T0 + timedelta(days=28, hours=23), False),
        (UPLOADED, T0 + timedelta(days=29), True),
        (UPLOADED, T0 + timedelta(days=31), True),
    ],
)
def test_uploads_are_due_before_the_id_expires(
    uploaded: UploadedMedia | None, now: datetime, due: bool
) -> None:
    assert upload_due(uploaded, now) is due
