"""What the record path may write: an answer's values made storable, and the reasons an
answer is not. Pure; the recorder (`engine.recorder`) applies them.

One poisonous answer among thousands (an error code outside the column's range, a NUL byte
in a title) must not fail the flush it is part of: such values are written in a form the
database takes, and the original is kept readable in the title.
"""

from __future__ import annotations

from typing import Final

INT4_MIN: Final = -(2**31)
INT4_MAX: Final = 2**31 - 1
"""contacts.error_code and status_receipts.error_code are `integer`."""

MAX_TITLE_CHARS: Final = 1000
"""A title longer than this is cut (Meta's are under 200 characters)."""

REPLACEMENT: Final = "\ufffd"


def recordable_text(text: str | None, limit: int = MAX_TITLE_CHARS) -> str | None:
    """`text` as PostgreSQL takes it: NUL bytes (which `text` cannot hold) shown as U+FFFD,
    at most `limit` characters."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def recordable_error(code: int | None, title: str | None) -> tuple[int | None, str | None]:
    """(code, title) as the error columns take them: a code outside `integer` is kept in the
    title instead (`code 9999999999: ...`), NULs replaced."""
    if code is not None and not INT4_MIN <= code <= INT4_MAX:
        title = f"code {code}: {title}" if title else f"code {code}"
        code = None
    return code, recordable_text(title)


def quarantine_title(problem: str) -> str:
    """The error title of an answer the database refused: what was wrong, NUL-free."""
    return recordable_text(f"answer not recordable: {problem}", 300) or ""
