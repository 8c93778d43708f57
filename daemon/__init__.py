"""wa-sender: WhatsApp template campaigns from PostgreSQL, every contact tracked."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed package's version ("unknown" when run from a bare source tree)."""
    try:
        return metadata.version("wa-sender")
    except metadata.PackageNotFoundError:
        return "unknown"
