"""Root exception of wa-sender and its few meaningful children, and the exit codes the CLI
turns them into."""

from __future__ import annotations

from typing import ClassVar, Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
"""Anything that went wrong but the command line or the configuration."""
EXIT_USAGE: Final = 2
"""The command line is wrong (argparse's own code too)."""
EXIT_CONFIG: Final = 78
"""EX_CONFIG (sysexits.h): the configuration is wrong; systemd must not restart on it
(`RestartPreventExitStatus=78` in the unit)."""
EXIT_DATABASE_BLOCKED: Final = 75
"""EX_TEMPFAIL (sysexits.h): the database blocked writes (read-only, statement timeout, disk
full, a lock) longer than database.blocked_exit_s, or through the whole shutdown; the results
the daemon held are in its spool file, replayed at the next start. systemd restarts on it
(`Restart=on-failure`, `RestartForceExitStatus=75` in the unit)."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C (128 + SIGINT)."""


class WaSenderError(Exception):
    """Base of every error wa-sender raises on purpose; the CLI prints it as one line."""

    exit_code: ClassVar[int] = EXIT_ERROR


class EmbeddedPostgresError(WaSenderError):
    """The throwaway PostgreSQL could not be started or stopped."""


class ConfigError(WaSenderError):
    """The configuration file or an environment override is invalid (exit code 78)."""

    exit_code: ClassVar[int] = EXIT_CONFIG


class UsageError(WaSenderError):
    """The command line is wrong in a way argparse cannot see (exit code 2)."""

    exit_code: ClassVar[int] = EXIT_USAGE


class DatabaseError(WaSenderError):
    """The database is unreachable or refused an operation."""


class DatabaseBlockedError(DatabaseError):
    """The database did not take the daemon's writes in time; what it held is spooled
    (exit code 75)."""

    exit_code: ClassVar[int] = EXIT_DATABASE_BLOCKED


class NotFoundError(WaSenderError):
    """A campaign (or other named object) does not exist."""


class TransitionError(WaSenderError):
    """A lifecycle or state transition that the state model forbids."""


class ImportFileError(WaSenderError):
    """A contacts file that cannot be imported at all (nothing was written)."""


class TemplateRefusedError(WaSenderError):
    """A template the catalogue does not allow (unknown, not approved, another language) or
    that does not fit the campaign's values."""


class ListenError(WaSenderError):
    """A server could not listen on its address (port in use, address not local)."""
