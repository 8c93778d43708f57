"""The spool: what a daemon could not write before it exited (the database blocked writes past
the shutdown timeout), kept in a local file and replayed by the next start before it sends.

Results whose answer the daemon held stay *known* outcomes this way: without the spool their
contacts would come back as expired leases (unknown outcomes, resent under `retry`, errors
under `error`). One JSON object a line; a file per daemon run, named for its database, taken
by renaming before it is replayed (two daemons starting at once never replay one file twice).
Replaying is idempotent: a result applies only to the attempt it belongs to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from daemon.config import Config
from daemon.core.decide import Decision
from daemon.core.model import ContactId
from daemon.core.retry import database_retrying
from daemon.core.states import ContactState
from daemon.db import sender_store as store
from daemon.db.database import default_state_dir
from daemon.db.pool import RETRYABLE_ERRORS
from daemon.engine.recorder import ResultRecorder
from daemon.engine.sender_writes import Unwritten
from daemon.errors import DatabaseBlockedError
from daemon.logs import get_logger

log = get_logger(__name__)

SPOOL_PREFIX = "unflushed-"


WATCH_EVERY_S = 0.5


class Spooler:
    """One daemon run's spool: replayed at start, written at exit when needed; and the watch
    that stops the daemon once writes have been blocked for database.blocked_exit_s."""

    def __init__(self, config: Config, database_name: str) -> None:
        self._config = config
        self.directory = spool_dir(config)
        self.key = database_key(database_name)
        self.blocked_reason: str | None = None  # set when the watch stopped the daemon

    async def replay(self, pool: asyncpg.Pool) -> int:
        """Replay every spool file of this database; the entries replayed. Retried while the
        database blocks writes, for database.blocked_exit_s at most (then exit code 75)."""
        total = 0
        for path in spool_files(self.directory, self.key):
            retrying = database_retrying(
                RETRYABLE_ERRORS,
                log,
                operation="spool_replay",
                max_s=2.0,
                deadline_s=self._config.database.blocked_exit_s,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        async with pool.acquire() as conn:
                            counts = await replay_spool(conn, self._config, path)
            except RETRYABLE_ERRORS as exc:
                raise DatabaseBlockedError(
                    f"cannot replay the spool {path}: the database does not take writes"
                    f" ({type(exc).__name__}); it is kept for the next start"
                ) from exc
            total += sum(counts.values())
        return total

    async def watch_blocked(self, recorder: ResultRecorder, stop: asyncio.Event) -> None:
        """Set `stop` once writes have been blocked database.blocked_exit_s in a row; runs
        until cancelled."""
        limit_s = self._config.database.blocked_exit_s
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.blocked_reason is None and recorder.blocked_for_s() >= limit_s:
                self.blocked_reason = recorder.block_reason or "writes blocked"
                log.error(
                    "database_blocked_too_long",
                    blocked_s=round(recorder.blocked_for_s(), 1),
                    reason=self.blocked_reason,
                    backlog=recorder.backlog,
                )
                stop.set()

    def keep(self, daemon_id: str, unwritten: Unwritten) -> Path | None:
        """Spool what the shutdown could not write (None: nothing was left); after a blocked
        stop an empty spool is still reported (the exit code must say why it stopped)."""
        if unwritten.count:
            path = write_spool(self.directory, self.key, daemon_id, unwritten)
            log.error("results_spooled", file=str(path), entries=unwritten.count)
            return path
        return self.directory if self.blocked_reason is not None else None

    def exit_line(self, recorder: ResultRecorder, unwritten: Unwritten, spooled: Path) -> str:
        """The one line the daemon exits with (code 75)."""
        why = self.blocked_reason or recorder.block_reason or "the database did not take writes"
        if not unwritten.count:
            return (
                f"database blocked writes for {self._config.database.blocked_exit_s:g} s"
                f" ({why}); every result was written before exit"
            )
        return (
            f"database blocked writes ({why}): {len(unwritten.results)} results,"
            f" {len(unwritten.releases)} releases and {len(unwritten.cut_off)} cut-off sends"
            f" spooled to {spooled}; replayed at the next start"
        )


def spool_dir(config: Config) -> Path:
    """database.spool_dir, else systemd's $STATE_DIRECTORY, else the per-user state dir."""
    if config.database.spool_dir:
        return Path(config.database.spool_dir)
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    return default_state_dir().parent


def database_key(database_name: str) -> str:
    """What a spool file is named for: results are only replayed into the same database."""
    return hashlib.sha256(database_name.encode()).hexdigest()[:12]


def write_spool(directory: Path, key: str, daemon_id: str, unwritten: Unwritten) -> Path:
    """Write what was not written to `directory` (made if missing), fsynced; its path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{SPOOL_PREFIX}{key}-{daemon_id}.jsonl"
    lines = [orjson.dumps(_result_entry(r)) for r in unwritten.results]
    if unwritten.releases:
        lines.append(
            orjson.dumps({"kind": "release", "daemon": daemon_id, "ids": unwritten.releases})
        )
    if unwritten.cut_off:
        lines.append(
            orjson.dumps({"kind": "cut_off", "daemon": daemon_id, "ids": unwritten.cut_off})
        )
    partial = path.with_suffix(".partial")
    with partial.open("wb") as f:
        f.write(b"\n".join(lines) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    partial.rename(path)
    return path


def spool_files(directory: Path, key: str) -> list[Path]:
    """The spool files of this database waiting to be replayed, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob(f"{SPOOL_PREFIX}{key}-*.jsonl")]
    return sorted(found, key=lambda p: p.stat().st_mtime)


async def replay_spool(conn: asyncpg.Connection, config: Config, path: Path) -> dict[str, int]:
    """Write one spool file's entries (results, then releases, then cut-off sends), in one
    transaction, then delete the file; counts by kind. A failure leaves the file in place."""
    taken, entries = _take(path)
    try:
        results = [_result_from(e) for e in entries if e.get("kind") == "result"]
        counts = {"results": len(results), "releases": 0, "cut_off": 0}
        recovery = config.recovery
        async with conn.transaction():
            for i in range(0, len(results), 1000):
                await store.record_results(conn, results[i : i + 1000])
            for entry in entries:
                if entry.get("kind") == "release":
                    await store.release_contacts(conn, entry["ids"], entry["daemon"])
                    counts["releases"] += len(entry["ids"])
                elif entry.get("kind") == "cut_off":
                    await store.expire_own_contacts(
                        conn,
                        entry["ids"],
                        recovery.unknown_outcome,
                        recovery.grace_s,
                        config.sender.max_attempts,
                        entry["daemon"],
                        recovery.max_unknown_outcomes,
                    )
                    counts["cut_off"] += len(entry["ids"])
    except BaseException:
        taken.rename(path)
        raise
    taken.unlink()
    log.warning("spool_replayed", file=str(path), **counts)
    return counts


def _take(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Take a spool file by renaming it (another daemon starting now skips it); its entries."""
    taken = path.with_suffix(f".replaying-{os.getpid()}")
    path.rename(taken)
    return taken, [orjson.loads(line) for line in taken.read_bytes().splitlines() if line]


def _result_entry(r: store.SendResult) -> dict[str, Any]:
    d = r.decision
    return {
        "kind": "result",
        "id": r.contact_id,
        "attempt": r.attempt,
        "phone": r.phone,
        "at": r.at.isoformat(),
        "wamid": r.wamid,
        "wa_id": r.wa_id,
        "message_status": r.message_status,
        "state": d.state.value,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
        "error_code": d.error_code,
        "error_title": d.error_title,
        "suppress": d.suppress,
        "unknown": d.unknown,
    }


def _result_from(e: dict[str, Any]) -> store.SendResult:
    next_at = e.get("next_attempt_at")
    decision = Decision(
        ContactState(e["state"]),
        next_attempt_at=datetime.fromisoformat(next_at) if next_at else None,
        error_code=e.get("error_code"),
        error_title=e.get("error_title"),
        suppress=bool(e.get("suppress")),
        unknown=bool(e.get("unknown")),
    )
    return store.SendResult(
        ContactId(e["id"]),
        e["attempt"],
        e["phone"],
        decision,
        datetime.fromisoformat(e["at"]),
        e.get("wamid"),
        e.get("wa_id"),
        e.get("message_status"),
    )
