"""Database faults during a run (issue 21, item 4), under a supervisor that restarts the
daemon 5 s after it exits (as the unit's Restart=on-failure, RestartSec=5 does).

Each fault hits a server of this module's own (restartable), the real daemon sending a
campaign through the mock. Afterwards every contact is final, no answer the daemon held is
lost (a contact whose acceptance the daemon saw ends `sent`), and nothing is sent twice
(recovery.unknown_outcome = error: an outcome left unknown is never resent, so a duplicate
would be a lost answer resent). The long table (6,000 contacts, every fault) is marked slow;
a short version runs by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from daemon.config import Config
from daemon.core.outcomes import OutcomeKind
from daemon.core.states import PENDING_STATES, CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.db.database import create_database, with_database_name
from daemon.db.migrate import apply_migrations
from daemon.db.pool import connect, open_pool
from daemon.engine.service import run_daemon
from daemon.engine.web import WebDeps, build_web_app, serve_web_app
from daemon.errors import WaSenderError
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from tests.helpers import pgfaults
from tests.helpers.daemon import daemon_config
from tests.helpers.data import campaign_with_contacts
from tests.helpers.pgfaults import DAEMON_ROLE, FaultContext, FaultFn, RestartablePostgres

RESTART_AFTER_S = 5.0
_names = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


@dataclass
class FaultRow:
    """One line of the fault table."""

    fault: str
    contacts: int
    restarts: int
    exit_codes: list[int]
    duplicates: int
    held_lost: int
    unknown: int
    recover_s: float
    total_s: float
    counts: dict[str, int]

    def line(self) -> str:
        return (
            f"| {self.fault} | {self.contacts} | {self.restarts} {self.exit_codes or ''} |"
            f" {self.duplicates} | {self.held_lost} | {self.unknown} | {self.recover_s:.1f} |"
            f" {self.total_s:.1f} |"
        )


async def new_database(server: RestartablePostgres) -> tuple[str, str]:
    """(name, daemon DSN) of a fresh, migrated database; the daemon logs in as its own role."""
    name = f"faults_{next(_names)}"
    admin = await asyncpg.connect(server.dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", DAEMON_ROLE):
            await admin.execute(f"CREATE ROLE {DAEMON_ROLE} LOGIN SUPERUSER")
        await create_database(admin, name)
    finally:
        await admin.close()
    dsn = with_database_name(server.dsn, name)
    conn = await connect(dsn)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return name, pgfaults.role_dsn(dsn, DAEMON_ROLE)


async def pending(dsn: str, campaign_id: int) -> int | None:
    """Contacts not final yet (None while the database cannot be read)."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    try:
        left: int = await asyncio.wait_for(
            conn.fetchval(
                "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state::text = ANY($2)",
                campaign_id,
                [s.value for s in PENDING_STATES],
            ),
            5,
        )
        return left
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


class Supervisor:
    """Runs the daemon in-process; restarts it RESTART_AFTER_S after it exits."""

    def __init__(self, config: Config, dsn: str, on_send: Any) -> None:
        self.config, self.dsn, self.on_send = config, dsn, on_send
        self.exit_codes: list[int] = []
        self.done = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self.done.is_set():
            self._stop = asyncio.Event()
            task = asyncio.create_task(
                run_daemon(
                    self.config,
                    self.dsn,
                    stop=self._stop,
                    install_signal_handlers=False,
                    on_send=self.on_send,
                )
            )
            finished = asyncio.ensure_future(self.done.wait())
            await asyncio.wait([task, finished], return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if not task.done():
                self._stop.set()
            try:
                code = await task
            except WaSenderError as exc:
                code = exc.exit_code
                print(f"daemon exited {code}: {exc}")
            if self.done.is_set():
                assert code == 0, f"the last daemon exited {code}"
                return
            self.exit_codes.append(code)
            await asyncio.sleep(RESTART_AFTER_S)


async def run_fault(
    server: RestartablePostgres,
    tmp_path: Path,
    name: str,
    fault: FaultFn,
    contacts: int,
    *,
    rate: float = 500.0,
    database: dict[str, Any] | None = None,
    before: Any = None,
) -> FaultRow:
    db_name, dsn = await new_database(server)
    admin_dsn = with_database_name(server.dsn, db_name)
    conn = await connect(admin_dsn)
    try:
        cid = await campaign_with_contacts(conn, tmp_path, contacts)
        if before is not None:
            await before(conn)
    finally:
        await conn.close()
    held: dict[int, str] = {}  # contact id -> wamid of an acceptance the daemon saw

    def on_send(work: Any, outcome: Any, _took: float) -> None:
        if outcome.kind is OutcomeKind.ACCEPTED:
            held[work.contact.id] = outcome.wamid

    async with start_mock_server(MockConfig()) as mock:
        config = daemon_config(
            mock.base_url,
            sender={"rate_per_second": rate, "burst": rate / 10, "shutdown_timeout_s": 5.0},
            recovery={"unknown_outcome": "error", "lease_s": 30.0, "grace_s": 0.5},
            database={
                "write_timeout_s": 3.0,
                "blocked_exit_s": 60.0,
                "spool_dir": str(tmp_path / f"spool-{db_name}"),
                **(database or {}),
            },
        )
        supervisor = Supervisor(config, dsn, on_send)
        started = time.monotonic()
        run = asyncio.create_task(supervisor.run())
        try:
            c = await connect(admin_dsn)
            await change_campaign_state(c, cid, CampaignCommand.START)
            await c.close()
            while len(mock.state.accepted) < contacts // 5:
                assert not run.done(), "the supervisor stopped"
                await asyncio.sleep(0.05)
            ctx = FaultContext(server, server.dsn, db_name)
            await fault(ctx)
            fault_end = time.monotonic()
            accepted_at_end = len(mock.state.accepted)
            recover_s: float | None = None
            deadline = time.monotonic() + 300
            while (left := await pending(admin_dsn, cid)) != 0:
                if recover_s is None and len(mock.state.accepted) > accepted_at_end:
                    recover_s = time.monotonic() - fault_end
                assert time.monotonic() < deadline, f"{left} contacts still pending"
                await asyncio.sleep(0.2)
            if recover_s is None:
                recover_s = time.monotonic() - fault_end
            total_s = time.monotonic() - started
        finally:
            supervisor.done.set()
            await asyncio.wait_for(run, 60)
        accepted = Counter(m.to for m in mock.state.accepted)
    conn = await connect(admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, phone, state::text AS state, wamid, outcome_unknown FROM contacts"
            " WHERE campaign_id = $1",
            cid,
        )
    finally:
        await conn.close()
    counts = dict(Counter(r["state"] for r in rows))
    lost = [r["id"] for r in rows if r["id"] in held and r["state"] != "sent"]
    row = FaultRow(
        fault=name,
        contacts=contacts,
        restarts=len(supervisor.exit_codes),
        exit_codes=supervisor.exit_codes,
        duplicates=sum(1 for n in accepted.values() if n > 1),
        held_lost=len(lost),
        unknown=sum(1 for r in rows if r["outcome_unknown"] and r["state"] == "error"),
        recover_s=recover_s,
        total_s=total_s,
        counts=counts,
    )
    print(f"\nFAULT ROW {row.line()} {counts}")
    assert sum(counts.values()) == contacts
    assert not set(counts) & {s.value for s in PENDING_STATES}, counts
    assert row.held_lost == 0, f"answers the daemon held were lost: {lost[:10]}"
    assert row.duplicates == 0, "sent twice"
    # Every message the API took is recorded as sent, unless its outcome stayed unknown.
    assert counts.get("sent", 0) + row.unknown >= len(mock.state.accepted)
    return row


async def tiny_tablespace(server: RestartablePostgres, disk: pgfaults.TinyDisk) -> Any:
    """A `before` hook: contacts moved onto a tablespace on the tiny disk."""
    owner = "nobody" if server._user is None else server._user.pw_name
    disk.mount(owner)
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f"CREATE TABLESPACE tiny LOCATION '{disk.path}'")
    finally:
        await admin.close()

    async def before(conn: asyncpg.Connection) -> None:
        await conn.execute("ALTER TABLE contacts SET TABLESPACE tiny")

    return before


async def drop_tiny_tablespace(server: RestartablePostgres, disk: pgfaults.TinyDisk) -> None:
    admin = await asyncpg.connect(server.dsn)
    try:
        for (name,) in await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'faults_%'"
        ):
            conn = await asyncpg.connect(with_database_name(server.dsn, name))
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("DROP TABLE IF EXISTS contacts CASCADE")
                await conn.execute("DROP TABLE IF EXISTS filler")
            await conn.close()
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute("DROP TABLESPACE IF EXISTS tiny")
    finally:
        await admin.close()
    disk.unmount()


# -- the short table (default run) ----------------------------------------------------------


async def test_read_only_past_blocked_exit_spools_exits_75_and_the_restart_replays(
    server: RestartablePostgres, tmp_path: Path
) -> None:
    row = await run_fault(
        server,
        tmp_path,
        "read-only 8 s, blocked_exit_s 3",
        lambda ctx: pgfaults.read_only(ctx, 8.0),
        1500,
        database={"blocked_exit_s": 3.0},
    )
    assert row.restarts >= 1 and set(row.exit_codes) == {75}, row.exit_codes


async def test_a_lock_on_contacts_stops_sending_and_the_daemon_carries_on(
    server: RestartablePostgres, tmp_path: Path
) -> None:
    row = await run_fault(server, tmp_path, "ACCESS EXCLUSIVE 8 s", pgfaults.table_lock(8.0), 1500)
    assert row.restarts == 0


async def test_an_immediate_server_restart_loses_nothing(
    server: RestartablePostgres, tmp_path: Path
) -> None:
    row = await run_fault(
        server, tmp_path, "restart immediate", pgfaults.restart(signal.SIGQUIT), 1500
    )
    assert row.restarts == 0


async def test_readyz_reports_a_database_that_blocks_writes(
    server: RestartablePostgres, tmp_path: Path
) -> None:
    db_name, dsn = await new_database(server)
    ctx = FaultContext(server, server.dsn, db_name)
    async with open_pool(dsn, min_size=1, max_size=2) as pool:
        app = build_web_app(WebDeps(daemon_config("", webhook={"enabled": False}), pool))
        async with serve_web_app(app, "127.0.0.1", 0) as base_url, aiohttp.ClientSession() as http:

            async def ready() -> tuple[int, dict[str, Any]]:
                async with http.get(f"{base_url}/readyz") as response:
                    return response.status, await response.json()

            assert await ready() == (200, {"status": "ready"})
            lock = asyncio.create_task(pgfaults.table_lock(3.0)(ctx))
            await asyncio.sleep(0.5)
            status, body = await ready()
            assert (status, body["status"]) == (503, "database blocks writes"), body
            await lock
            assert await ready() == (200, {"status": "ready"})
            read_only = asyncio.create_task(pgfaults.read_only(ctx, 2.0))
            await asyncio.sleep(0.5)
            status, body = await ready()
            assert (status, body["status"]) == (503, "database blocks writes"), body
            await read_only
            assert await ready() == (200, {"status": "ready"})


# -- the long table (slow): 6,000 contacts, every fault ----------------------------------------

LONG_FAULTS: list[tuple[str, FaultFn]] = [
    ("pg_terminate_backend loop 10 s", pgfaults.terminate_loop),
    ("read-only 15 s", pgfaults.read_only),
    ("statement_timeout 1 ms on the role, 15 s", pgfaults.statement_timeout_1ms),
    ("ACCESS EXCLUSIVE on contacts 30 s", pgfaults.table_lock(30.0)),
    ("ACCESS EXCLUSIVE on contacts 75 s", pgfaults.table_lock(75.0)),
    ("restart fast", pgfaults.restart(signal.SIGINT)),
    ("restart immediate", pgfaults.restart(signal.SIGQUIT)),
    ("stopped 15 s", pgfaults.stopped_15s),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fault"), LONG_FAULTS, ids=[n for n, _ in LONG_FAULTS])
async def test_fault_table(
    server: RestartablePostgres, tmp_path: Path, name: str, fault: FaultFn
) -> None:
    await run_fault(server, tmp_path, name, fault, 6000)


@pytest.mark.slow
async def test_fault_table_disk_full_20s(server: RestartablePostgres, tmp_path: Path) -> None:
    assert pgfaults.can_mount(), "the full-disk row needs root (a tmpfs under a tablespace)"
    disk = pgfaults.TinyDisk(24)
    try:
        before = await tiny_tablespace(server, disk)
        await run_fault(
            server, tmp_path, "disk full 20 s", pgfaults.disk_full(20.0), 6000, before=before
        )
    finally:
        await drop_tiny_tablespace(server, disk)
