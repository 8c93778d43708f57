"""Root exception of wa-sender and its few meaningful children."""

from __future__ import annotations


class WaSenderError(Exception):
    """Base of every error wa-sender raises on purpose; the CLI prints it as one line."""


class EmbeddedPostgresError(WaSenderError):
    """The throwaway PostgreSQL could not be started or stopped."""


class ConfigError(WaSenderError):
    """The configuration file or an environment override is invalid."""


class DatabaseError(WaSenderError):
    """The database is unreachable or refused an operation."""


class NotFoundError(WaSenderError):
    """A campaign (or other named object) does not exist."""


class TransitionError(WaSenderError):
    """A lifecycle or state transition that the state model forbids."""


class ImportFileError(WaSenderError):
    """A contacts file that cannot be imported at all (nothing was written)."""


class TemplateRefusedError(WaSenderError):
    """A template the catalogue does not allow (unknown, not approved, another language) or
    that does not fit the campaign's values."""
