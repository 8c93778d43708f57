"""Logging, configured once: JSON lines for journald, console lines on a TTY.

Phone numbers are masked and secrets dropped by processors, so no call site has to remember.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from enum import Enum
from typing import Any, TextIO

import structlog

PHONE_KEYS = frozenset({"phone", "to", "wa_id", "recipient_id", "recipient", "input"})
SECRET_KEYS = frozenset(
    {"access_token", "app_secret", "verify_token", "token", "authorization", "password", "dsn"}
)
_PHONE_IN_TEXT = re.compile(r"(?<![\w.])\+?\d{8,15}(?![\w.])")
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@")


def mask_phone(value: str) -> str:
    """Keep the country-code-ish head and the last two digits: 16505551234 -> 165*******34."""
    digits = value.lstrip("+")
    if len(digits) <= 5:
        return "*" * len(digits)
    return value[: len(value) - len(digits)] + digits[:3] + "*" * (len(digits) - 5) + digits[-2:]


def mask_text(text: str) -> str:
    """`text` with DSN passwords and phone-number-like digit runs masked."""
    text = _DSN_PASSWORD.sub(r"\1***@", text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def plain_values(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A processor: enum members become their values (the console renderer would show
    `<OutcomeKind.ACCEPTED: 'accepted'>`), also as the keys and items of dicts and lists."""
    for key, value in event.items():
        event[key] = _plain(value)
    return event


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A processor: secrets dropped, phone numbers masked (by key, and inside text)."""
    for key, value in list(event.items()):
        if key in SECRET_KEYS:
            event[key] = "***"
        elif key in PHONE_KEYS and isinstance(value, str):
            event[key] = mask_phone(value)
        elif isinstance(value, str) and key != "event":
            event[key] = mask_text(value)
    if isinstance(event.get("event"), str):
        event["event"] = mask_text(event["event"])
    return event


_configured = False


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process (later calls reconfigure; tests use that)."""
    global _configured
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            plain_values,
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _configured = True
    _route_stdlib_logging(logging.getLevelNamesMapping()[level.upper()])


class StdlibBridge(logging.Handler):
    """The standard library's log records (asyncpg's, asyncio's, aiohttp's) through structlog:
    the same JSON lines, masks and redaction as ours, a traceback inside its line (the
    `exception` key) instead of lines of plain text in between."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log one record as a structlog event named for its message."""
        try:
            logger = structlog.get_logger(record.name)
            method = getattr(logger, record.levelname.lower(), logger.error)
            kw: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            method(record.getMessage(), **kw)
        except Exception:  # a logging failure must never take the daemon down
            self.handleError(record)


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(StdlibBridge())
    # asyncpg and aiohttp are chatty below warnings; ours filter by `level` in structlog.
    root.setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> Any:
    """The module's structlog logger."""
    return structlog.get_logger(name)
