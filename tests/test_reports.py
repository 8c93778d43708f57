"""SQL reports against a dataset built with direct INSERTs, whose right answers are computed
here in Python: through `run_report`, the CLI's table/csv/json output, and the real psql."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.cli import main
from daemon.core.states import PENDING_STATES, ContactState
from daemon.db.sql import SQL_DIR
from daemon.errors import NotFoundError, WaSenderError
from daemon.ops import reports
from daemon.ops.reports import available_reports, run_report, to_parameterised

S = ContactState
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ACCEPTED = frozenset({S.SENT, S.DELIVERED, S.READ, S.DELIVERY_FAILED, S.SUCCESSFULLY_SUBMITTED})
POSITION = {state: i for i, state in enumerate(ContactState)}
OUR_REPORTS = ("campaign_summary", "delivery_funnel", "throughput", "errors_by_code", "latency")
# Titles differ in their first letters, so C and linguistic collations sort them alike.
ERRORS: dict[ContactState, list[tuple[int | None, str]]] = {
    S.SENDING_FAILED: [(131026, "Message undeliverable"), (131050, "User opted out")],
    S.DELIVERY_FAILED: [
        (131049, "Healthy ecosystem engagement"),
        (131026, "Message undeliverable"),
    ],
    S.ERROR: [(None, "transport error: timeout"), (131000, "Something went wrong")],
    S.RETRY_SCHEDULED: [(130429, "Rate limit hit"), (None, "outcome unknown: lease expired")],
}


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    state: str


@dataclass(frozen=True)
class Contact:
    campaign_id: int
    phone: str
    state: ContactState
    attempts: int = 0
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    error_code: int | None = None
    error_title: str | None = None


@dataclass(frozen=True)
class Dataset:
    campaigns: list[Campaign]
    contacts: list[Contact]

    def selected(self, campaign_id: int | None) -> list[Campaign]:
        return [c for c in self.campaigns if campaign_id is None or c.id == campaign_id]

    def of(self, campaign_id: int) -> list[Contact]:
        return [c for c in self.contacts if c.campaign_id == campaign_id]


def _micros(rng: random.Random, low_s: float, high_s: float) -> timedelta:
    return timedelta(microseconds=rng.randrange(int(low_s * 1e6), int(high_s * 1e6)))


def _contact(rng: random.Random, campaign_id: int, i: int, states: list[ContactState]) -> Contact:
    state = rng.choice(states)
    phone = f"1555{campaign_id:03d}{i:04d}"
    if state is S.INITIAL:
        return Contact(campaign_id, phone, state)
    sent = delivered = read = None
    if state in ACCEPTED:
        sent = T0 + _micros(rng, 0, 900)
        if state in (S.DELIVERED, S.READ):
            # Status timestamps have a one-second resolution: a delivery may predate sent_at.
            delivered = sent + _micros(rng, -0.5, 40)
            if state is S.DELIVERED and i % 9 == 0:
                sent = None  # delivered receipt for a contact whose send result never came
        if state is S.READ:
            assert delivered is not None
            read = delivered + _micros(rng, 0, 3600)
    code, title = rng.choice(ERRORS[state]) if state in ERRORS else (None, None)
    return Contact(campaign_id, phone, state, rng.randint(1, 4), sent, delivered, read, code, title)


async def build_dataset(conn: asyncpg.Connection) -> Dataset:
    rng = random.Random(20250301)
    everyday = [s for s in ContactState if s is not S.SUCCESSFULLY_SUBMITTED]
    plans = [
        ("spring sale", "running", 160, everyday),
        ("summer sale", "finished", 120, [S.SENT, S.DELIVERED, S.READ, S.DELIVERY_FAILED]),
        ("legacy import", "paused", 45, [*everyday, S.SUCCESSFULLY_SUBMITTED]),
        ("empty draft", "draft", 0, everyday),
    ]
    campaigns: list[Campaign] = []
    contacts: list[Contact] = []
    for name, state, n, states in plans:
        campaign_id = await conn.fetchval(
            "INSERT INTO campaigns (name, template_name, template_language, phone_number_id,"
            " state) VALUES ($1, 'spring', 'en_US', '1000001', $2) RETURNING id",
            name,
            state,
        )
        campaigns.append(Campaign(campaign_id, name, state))
        contacts += [_contact(rng, campaign_id, i, states) for i in range(n)]
    await conn.executemany(
        "INSERT INTO contacts (campaign_id, phone, state, attempts, sent_at, delivered_at,"
        " read_at, error_code, error_title, invalid_reason)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            (
                c.campaign_id,
                c.phone,
                c.state.value,
                c.attempts,
                c.sent_at,
                c.delivered_at,
                c.read_at,
                c.error_code,
                c.error_title,
                "invalid_length" if c.state is S.INVALID_RECORD else None,
            )
            for c in contacts
        ],
    )
    return Dataset(campaigns, contacts)


# -- the right answers, computed independently ---------------------------------------------


def pct(n: int, total: int) -> Decimal | None:
    if total == 0:
        return None
    return (Decimal(100) * n / total).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def percentile_cont(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    low = ordered[lower]
    if upper == lower:
        return low
    return low + (ordered[upper] - low) * (position - lower)


def round3(value: float | None) -> Decimal | None:
    """round(value::numeric, 3): float8 -> numeric keeps 15 significant digits."""
    if value is None:
        return None
    return Decimal(f"{value:.15g}").quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)


def expected_campaign_summary(ds: Dataset, campaign_id: int | None) -> list[tuple[Any, ...]]:
    rows = []
    for k in ds.selected(campaign_id):
        counts = Counter(c.state for c in ds.of(k.id))
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s not in PENDING_STATES)
        progress = pct(done, total) if total else Decimal("100.00")
        for state in ContactState:
            if state is S.SUCCESSFULLY_SUBMITTED and counts[state] == 0:
                continue
            share = pct(counts[state], total) if total else Decimal("0.00")
            rows.append(
                (
                    k.id,
                    k.name,
                    k.state,
                    state.value,
                    state.label,
                    counts[state],
                    share,
                    done,
                    total,
                    progress,
                )
            )
    return rows


def expected_delivery_funnel(ds: Dataset, campaign_id: int | None) -> list[tuple[Any, ...]]:
    rows = []
    for k in ds.selected(campaign_id):
        states = [c.state for c in ds.of(k.id)]
        contacts = sum(s not in (S.INVALID_RECORD, S.REMOVED) for s in states)
        sent = sum(s in ACCEPTED for s in states)
        delivered = sum(s in (S.DELIVERED, S.READ) for s in states)
        read = states.count(S.READ)
        delivery_failed = states.count(S.DELIVERY_FAILED)
        sending_failed = states.count(S.SENDING_FAILED)
        error = states.count(S.ERROR)
        attempted = sent + sending_failed + error
        rows.append(
            (
                k.id,
                k.name,
                contacts,
                attempted,
                sent,
                delivered,
                read,
                delivery_failed,
                sending_failed,
                error,
                pct(delivered, sent),
                pct(read, delivered),
                pct(delivery_failed, sent),
                pct(sending_failed, attempted),
                pct(error, attempted),
            )
        )
    return rows


def expected_throughput(ds: Dataset, campaign_id: int | None) -> list[tuple[Any, ...]]:
    per_minute: dict[tuple[int, datetime], Counter[str]] = defaultdict(Counter)
    wanted = {k.id for k in ds.selected(campaign_id)}
    for c in ds.contacts:
        if c.campaign_id not in wanted:
            continue
        for kind, at in (("sent", c.sent_at), ("delivered", c.delivered_at), ("read", c.read_at)):
            if at is not None:
                per_minute[(c.campaign_id, at.replace(second=0, microsecond=0))][kind] += 1
    return [
        (cid, minute, n["sent"], n["delivered"], n["read"])
        for (cid, minute), n in sorted(per_minute.items())
    ]


def expected_errors_by_code(ds: Dataset, campaign_id: int | None) -> list[tuple[Any, ...]]:
    rows = []
    for k in ds.selected(campaign_id):
        contacts = ds.of(k.id)
        failed = [c for c in contacts if c.error_code is not None or c.error_title is not None]
        by_state = Counter((c.error_code, c.error_title, c.state) for c in failed)
        by_code = Counter((c.error_code, c.error_title) for c in failed)
        for (code, title, state), n in by_state.items():
            code_n = by_code[(code, title)]
            rows.append(
                (k.id, code, title, state.value, state.label, n, code_n, pct(code_n, len(contacts)))
            )
    rows.sort(
        key=lambda r: (
            r[0],
            -r[6],
            r[1] is None,
            r[1] or 0,
            r[2] is None,
            r[2] or "",
            POSITION[S(r[3])],
        )
    )
    return rows


def expected_latency(ds: Dataset, campaign_id: int | None) -> list[tuple[Any, ...]]:
    rows = []
    for k in ds.selected(campaign_id):
        contacts = ds.of(k.id)
        to_delivered = [
            (c.delivered_at - c.sent_at).total_seconds()
            for c in contacts
            if c.sent_at is not None and c.delivered_at is not None
        ]
        to_read = [
            (c.read_at - c.delivered_at).total_seconds()
            for c in contacts
            if c.delivered_at is not None and c.read_at is not None
        ]
        rows.append(
            (
                k.id,
                len(to_delivered),
                *(round3(percentile_cont(to_delivered, p)) for p in (0.5, 0.9, 0.99)),
                len(to_read),
                *(round3(percentile_cont(to_read, p)) for p in (0.5, 0.9, 0.99)),
            )
        )
    return rows


EXPECTED: dict[str, Callable[[Dataset, int | None], list[tuple[Any, ...]]]] = {
    "campaign_summary": expected_campaign_summary,
    "delivery_funnel": expected_delivery_funnel,
    "throughput": expected_throughput,
    "errors_by_code": expected_errors_by_code,
    "latency": expected_latency,
}
COLUMNS = {
    "campaign_summary": "campaign_id campaign campaign_state state label contacts percent done total progress_percent",
    "delivery_funnel": "campaign_id campaign contacts attempted sent delivered read delivery_failed sending_failed error delivered_rate read_rate delivery_failed_rate sending_failed_rate error_rate",
    "throughput": "campaign_id minute sent delivered read",
    "errors_by_code": "campaign_id error_code error_title state label contacts code_contacts percent",
    "latency": "campaign_id delivered_samples delivered_p50_s delivered_p90_s delivered_p99_s read_samples read_p50_s read_p90_s read_p99_s",
}


@pytest.fixture
async def dataset(conn: asyncpg.Connection) -> Dataset:
    return await build_dataset(conn)


def test_our_reports_are_all_listed() -> None:
    assert set(OUR_REPORTS) <= set(available_reports())


def test_dataset_covers_every_state_and_error_kind() -> None:
    """The generator's coverage, so that the comparisons below mean something."""
    rng = random.Random(20250301)
    states = [s for s in ContactState if s is not S.SUCCESSFULLY_SUBMITTED]
    contacts = [_contact(rng, 1, i, states) for i in range(160)]
    assert {c.state for c in contacts} == set(states)
    assert any(c.state is S.DELIVERED and c.sent_at is None for c in contacts)
    assert any(c.error_code is None and c.error_title for c in contacts)


@pytest.mark.parametrize("name", OUR_REPORTS)
async def test_report_for_one_campaign_and_for_all_matches_python(
    conn: asyncpg.Connection, dataset: Dataset, name: str
) -> None:
    for campaign in dataset.campaigns:
        result = await run_report(conn, name, campaign.id)
        assert result.columns == tuple(COLUMNS[name].split())
        assert result.rows == EXPECTED[name](dataset, campaign.id), (name, campaign)
    everything = await run_report(conn, name)
    assert everything.rows == EXPECTED[name](dataset, None)
    assert everything.rows  # the dataset gives every report something to say


async def test_summary_shows_the_legacy_state_only_when_used(
    conn: asyncpg.Connection, dataset: Dataset
) -> None:
    legacy = next(c for c in dataset.campaigns if c.name == "legacy import")
    assert any(c.state is S.SUCCESSFULLY_SUBMITTED for c in dataset.of(legacy.id))
    for campaign in dataset.campaigns:
        rows = (await run_report(conn, "campaign_summary", campaign.id)).rows
        shown = "successfully_submitted" in {r[3] for r in rows}
        assert shown == (campaign.id == legacy.id)
        assert len(rows) == 12 + shown


async def test_empty_campaign_has_no_rates(conn: asyncpg.Connection, dataset: Dataset) -> None:
    empty = next(c for c in dataset.campaigns if c.name == "empty draft")
    (funnel,) = (await run_report(conn, "delivery_funnel", empty.id)).rows
    assert funnel[2:10] == (0,) * 8
    assert funnel[10:] == (None,) * 5
    summary = (await run_report(conn, "campaign_summary", empty.id)).rows
    assert {(r[6], r[9]) for r in summary} == {(Decimal("0.00"), Decimal("100.00"))}


# -- through the CLI ------------------------------------------------------------------------


async def _cli(monkeypatch: pytest.MonkeyPatch, dsn: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", dsn)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = await asyncio.to_thread(main, list(args))
    return code, out.getvalue(), err.getvalue()


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@pytest.mark.parametrize("name", ["delivery_funnel", "throughput", "latency"])
async def test_cli_formats(
    conn: asyncpg.Connection,
    db_dsn: str,
    dataset: Dataset,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    campaign_id = dataset.campaigns[0].id
    expected = EXPECTED[name](dataset, campaign_id)
    columns = COLUMNS[name].split()
    base = ("report", name, "--campaign", str(campaign_id))

    code, out, _ = await _cli(monkeypatch, db_dsn, *base, "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {col: _json_value(v) for col, v in zip(columns, row, strict=True)} for row in expected
    ]

    code, out, _ = await _cli(monkeypatch, db_dsn, *base, "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [columns] + [
        ["" if v is None else v.isoformat() if isinstance(v, datetime) else str(v) for v in row]
        for row in expected
    ]

    code, out, _ = await _cli(monkeypatch, db_dsn, *base)  # table is the default
    assert code == 0
    lines = out.rstrip("\n").split("\n")
    assert lines[0].split() == columns
    assert set(lines[1]) == {"-", " "}
    assert lines[-1] == f"({len(expected)} row{'' if len(expected) == 1 else 's'})"
    assert [line.split() for line in lines[2:-1]] == [
        " ".join(str(v) for v in row if v is not None).split() for row in expected
    ]


async def test_cli_without_campaign_reports_every_campaign(
    conn: asyncpg.Connection, db_dsn: str, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = await _cli(monkeypatch, db_dsn, "report", "delivery_funnel", "--format", "json")
    assert code == 0
    assert [r["campaign_id"] for r in json.loads(out)] == [c.id for c in dataset.campaigns]


async def test_cli_unknown_report_lists_the_available_ones(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = await _cli(monkeypatch, db_dsn, "report", "nope")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "unknown report 'nope'" in err
    assert "available: " + ", ".join(available_reports()) in err


async def test_cli_unknown_campaign_is_one_line_error(
    conn: asyncpg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = await _cli(monkeypatch, db_dsn, "report", "latency", "--campaign", "999")
    assert code == 1
    assert err == "wa-sender: error: campaign 999 does not exist\n"


@pytest.mark.parametrize("name", ["../migrations/0001_initial", "Campaign_Summary", ""])
def test_report_names_outside_the_reports_dir_are_unknown(name: str) -> None:
    with pytest.raises(NotFoundError, match="unknown report"):
        reports.report_text(name)


# -- the psql form ---------------------------------------------------------------------------


def test_psql_text_becomes_one_parameterised_query() -> None:
    text = (
        "-- a report\n\\if :{?campaign_id}\n\\else\n\\set campaign_id NULL\n\\endif\n"
        "SELECT x::int FROM t\nWHERE (:campaign_id::bigint IS NULL OR a = :campaign_id)\n"
        "  AND b = :'campaign_id';\n"
    )
    assert to_parameterised(text) == (
        "-- a report\nSELECT x::int FROM t\n"
        "WHERE ($1::bigint::bigint IS NULL OR a = $1::bigint)\n  AND b = $1::bigint;"
    )


async def test_report_without_the_variable_is_not_per_campaign(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: Dataset
) -> None:
    (tmp_path / "count_all.sql").write_text("SELECT count(*) AS n FROM contacts;\n")
    monkeypatch.setattr(reports, "report_path", lambda name: tmp_path / f"{name}.sql")
    assert available_reports() == ["count_all"]
    assert (await run_report(conn, "count_all")).rows == [(len(dataset.contacts),)]
    with pytest.raises(WaSenderError, match="not per campaign"):
        await run_report(conn, "count_all", dataset.campaigns[0].id)


async def test_reports_run_read_only(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evil.sql").write_text("DELETE FROM campaigns RETURNING id;\n")
    monkeypatch.setattr(reports, "report_path", lambda name: tmp_path / f"{name}.sql")
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await run_report(conn, "evil")


PSQL = shutil.which("psql")


def _psql_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    return str(value)


async def _psql(dsn: str, path: Path, *variables: str) -> list[list[str]]:
    assert PSQL is not None
    args = [PSQL, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1"]
    for variable in variables:
        args += ["-v", variable]
    proc = await asyncio.create_subprocess_exec(
        *args,
        "-f",
        str(path),
        dsn,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PGTZ": "UTC"},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return list(csv.reader(io.StringIO(out.decode())))


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
@pytest.mark.parametrize("name", OUR_REPORTS)
async def test_report_file_runs_in_psql(
    conn: asyncpg.Connection, db_dsn: str, dataset: Dataset, name: str
) -> None:
    path = SQL_DIR / "reports" / f"{name}.sql"
    campaign_id = dataset.campaigns[0].id
    header = COLUMNS[name].split()
    for variables, scope in (((f"campaign_id={campaign_id}",), campaign_id), ((), None)):
        rows = await _psql(db_dsn, path, *variables)
        assert rows == [header] + [
            [_psql_text(v) for v in row] for row in EXPECTED[name](dataset, scope)
        ]


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
@pytest.mark.parametrize("name", available_reports())
async def test_every_report_runs_in_psql_and_here(
    conn: asyncpg.Connection, db_dsn: str, dataset: Dataset, name: str
) -> None:
    """Also the reports written elsewhere (orphan_receipts): both ways, all campaigns."""
    path = SQL_DIR / "reports" / f"{name}.sql"
    here = await run_report(conn, name)
    there = await _psql(db_dsn, path)
    assert there[0] == list(here.columns)
    assert len(there) - 1 == len(here.rows)
