"""`campaign estimate`: a campaign's contacts priced by a rate card, by country and category,
the remaining sends and the whole campaign; invalid, suppressed, removed, canceled and failed
contacts cost nothing. Checked against a computation of the test's own, to the cent (exactly,
in Decimal), on 100,000 contacts in 10 countries; and the rate card options of the CLI."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import asyncpg

from daemon.core.payload import Template
from daemon.core.ratecard import parse_rate_card
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.db.campaigns import create_campaign
from tests.test_cli import REPO, one_line_error, wa
from tests.test_template_import import definition

# Ten countries; US and CA priced by the calling-code row "1", FR by "*".
PRICES = {
    "CZ": Decimal("0.0602"),
    "DE": Decimal("0.1131"),
    "GB": Decimal("0.0529"),
    "US": Decimal("0.0250"),
    "CA": Decimal("0.0250"),
    "IN": Decimal("0.0107"),
    "BR": Decimal("0.0625"),
    "SK": Decimal("0.0587"),
    "PL": Decimal("0.0473"),
    "FR": Decimal("0.0859"),
}
CARD_ROWS = [(c, p) for c, p in PRICES.items() if c not in ("US", "CA", "FR")] + [
    ("1", PRICES["US"]),
    ("*", PRICES["FR"]),
]
STATES = [
    # (state, weight): most are still to send, some sent, some cost nothing
    ("initial", 50),
    ("retry_scheduled", 3),
    ("in_progress", 2),
    ("sent", 15),
    ("delivered", 15),
    ("read", 5),
    ("invalid_record", 4),
    ("removed", 1),
    ("canceled_by_admin", 1),
    ("sending_failed", 2),
    ("delivery_failed", 2),
]
N = 100_000


def write_card(path: Path, rows: list[tuple[str, Decimal]], category: str = "marketing") -> Path:
    lines = ["# test rates", "country,category,price,currency"]
    lines += [f"{c},{category},{p},EUR" for c, p in rows]
    lines.append("*,utility,0.001,EUR")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def marketing_campaign(conn: asyncpg.Connection) -> int:
    spec = bind_template(definition("loadtest_offer"), source=TemplateSource.CATALOGUE)
    return await create_campaign(
        conn, "cost", Template("loadtest_offer", "en_US"), "1000001", spec=spec
    )


async def seed(conn: asyncpg.Connection, campaign_id: int, n: int) -> None:
    """n contacts spread unevenly over the ten countries and the states, by SQL."""
    countries = list(PRICES)
    states = [s for s, w in STATES for _ in range(w)]
    await conn.execute(
        """
        INSERT INTO contacts (campaign_id, phone, state, region, invalid_reason)
        SELECT $1, '9' || lpad(i::text, 11, '0'),
               ($3::text[])[1 + (i * 7919) % array_length($3::text[], 1)]::contact_state,
               ($2::text[])[1 + ((i * i) % 97) % array_length($2::text[], 1)],
               'test'
        FROM generate_series(1::bigint, $4::bigint) AS i
        """,
        campaign_id,
        countries,
        states,
        n,
    )
    # Suppressed phones cost nothing: 1 in 50, with either scope (marketing campaign).
    await conn.execute(
        """
        INSERT INTO suppressions (phone, reason, scope)
        SELECT '9' || lpad(i::text, 11, '0'), 'test',
               CASE WHEN i % 100 = 0 THEN 'marketing' ELSE 'all' END
        FROM generate_series(1, $1) AS i WHERE i % 50 = 0
        """,
        n,
    )


async def expected(
    conn: asyncpg.Connection, campaign_id: int
) -> dict[str, tuple[int, Decimal, int, Decimal]]:
    """The test's own sums: each contact priced one by one."""
    suppressed = {r["phone"] for r in await conn.fetch("SELECT phone FROM suppressions")}
    pending = {"initial", "retry_scheduled", "in_progress"}
    done = {"sent", "delivered", "read", "successfully_submitted"}
    sums: dict[str, list[object]] = {}
    rows = await conn.fetch(
        "SELECT phone, state::text AS state, region FROM contacts WHERE campaign_id = $1",
        campaign_id,
    )
    for r in rows:
        if r["phone"] in suppressed or r["state"] not in pending | done:
            continue
        price = PRICES[r["region"]]
        entry = sums.setdefault(r["region"], [0, Decimal(0), 0, Decimal(0)])
        if r["state"] in pending:
            entry[0] += 1  # type: ignore[operator]
            entry[1] += price  # type: ignore[operator]
        entry[2] += 1  # type: ignore[operator]
        entry[3] += price  # type: ignore[operator]
    return {k: (int(v[0]), Decimal(v[1]), int(v[2]), Decimal(v[3])) for k, v in sums.items()}  # type: ignore[arg-type]


async def test_estimate_of_100k_contacts_in_10_countries_matches_to_the_cent(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    cid = await marketing_campaign(conn)
    await seed(conn, cid, N)
    assert len(Counter(r["region"] for r in await conn.fetch("SELECT region FROM contacts"))) == 10
    want = await expected(conn, cid)
    card = write_card(tmp_path / "rates.csv", CARD_ROWS)
    result = wa(db_dsn, "campaign", "estimate", str(cid), "--rate-card", str(card), "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["category"] == "marketing" and got["currency"] == "EUR"
    by_country = {
        c["country"]: (
            c["remaining"]["messages"],
            Decimal(c["remaining"]["cost"]),
            c["total"]["messages"],
            Decimal(c["total"]["cost"]),
        )
        for c in got["countries"]
    }
    assert by_country == want
    remaining = sum(v[1] for v in want.values())
    total = sum(v[3] for v in want.values())
    assert Decimal(got["remaining"]["cost"]) == remaining
    assert Decimal(got["total"]["cost"]) == total
    assert got["remaining"]["messages"] == sum(v[0] for v in want.values())
    assert got["unpriced"] == []
    # Rounded to the cent, as an invoice shows it: the same.
    assert Decimal(got["total"]["cost"]).quantize(Decimal("0.01")) == total.quantize(
        Decimal("0.01")
    )
    assert 50_000 < got["remaining"]["messages"] < got["total"]["messages"] < N
    table = wa(db_dsn, "campaign", "estimate", str(cid), "--rate-card", str(card))
    assert table.returncode == 0, table.stderr
    assert f"whole campaign: {got['total']['messages']} messages, {total:f} EUR" in table.stdout
    assert "DE       marketing" in table.stdout


async def test_unpriced_countries_and_stored_card_and_category(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    cid = await marketing_campaign(conn)
    await seed(conn, cid, 2000)
    card = write_card(tmp_path / "rates.csv", [("CZ", Decimal("0.06")), ("DE", Decimal("0.1"))])
    # No '*' marketing row: eight countries are not priced, and say so.
    card.write_text(card.read_text().replace("*,utility,0.001,EUR\n", ""))
    got = json.loads(
        wa(db_dsn, "campaign", "estimate", str(cid), "--rate-card", str(card), "--json").stdout
    )
    assert {c["country"] for c in got["countries"]} == {"CZ", "DE"}
    assert {u["country"] for u in got["unpriced"]} == set(PRICES) - {"CZ", "DE"}
    none = wa(db_dsn, "campaign", "estimate", str(cid))
    one_line_error(none, "has no rate card: give --rate-card")
    stored = wa(db_dsn, "campaign", "update", str(cid), "--rate-card", str(card))
    assert stored.returncode == 0, stored.stderr
    again = json.loads(wa(db_dsn, "campaign", "estimate", str(cid), "--json").stdout)
    assert again["countries"] == got["countries"]
    utility = json.loads(
        wa(db_dsn, "campaign", "estimate", str(cid), "--category", "utility", "--json").stdout
    )
    assert utility["category"] == "utility" and utility["countries"] == []


def test_bad_rate_card_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("country,category,price,currency\nCZ,marketing,0.06,EUR\nDE,marketing,x,EUR\n")
    result = wa(None, "campaign", "estimate", "1", "--rate-card", str(bad))
    one_line_error(result, f"{bad}:3: price 'x' is not a number")
    missing = wa(None, "campaign", "estimate", "1", "--rate-card", str(tmp_path / "nope.csv"))
    one_line_error(missing, "cannot read rate card")


def test_shipped_example_parses_and_says_it_is_an_example() -> None:
    path = REPO / "docs" / "rate-card.example.csv"
    text = path.read_text(encoding="utf-8")
    assert "EXAMPLE ONLY" in text.splitlines()[0] and "NOT Meta's current prices" in text
    card = parse_rate_card(text.splitlines(), str(path))
    assert card.currency == "EUR" and card.price("CA", "marketing") is not None


async def test_budget_options_store_the_card_and_check_the_currency(
    conn: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    cid = await marketing_campaign(conn)
    card = write_card(tmp_path / "rates.csv", [("CZ", Decimal("0.06"))])
    no_card = wa(db_dsn, "campaign", "update", str(cid), "--budget", "10")
    one_line_error(no_card, "--budget needs the campaign's rates")
    other = wa(
        db_dsn,
        "campaign",
        "update",
        str(cid),
        "--budget",
        "10",
        "--budget-currency",
        "USD",
        "--rate-card",
        str(card),
    )
    one_line_error(other, "--budget-currency USD differs from the rate card's EUR")
    alone = wa(db_dsn, "campaign", "update", str(cid), "--budget-currency", "EUR")
    one_line_error(alone, "--budget-currency goes with --budget AMOUNT")
    bad = wa(db_dsn, "campaign", "update", str(cid), "--budget", "-3", "--rate-card", str(card))
    one_line_error(bad, "--budget must be an amount of at least 0")
    ok = wa(
        db_dsn,
        "campaign",
        "update",
        str(cid),
        "--budget",
        "12.50",
        "--rate-card",
        str(card),
        "--json",
    )
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["budget"], doc["budget_currency"], doc["rate_card"]) == (
        "12.50",
        "EUR",
        "rates.csv",
    )
    status = wa(db_dsn, "campaign", "status", str(cid))
    assert "Budget: 12.50 EUR, rate card rates.csv" in status.stdout, status.stdout
    off = json.loads(
        wa(db_dsn, "campaign", "update", str(cid), "--budget", "none", "--json").stdout
    )
    assert off["budget"] is None


def test_create_with_a_rate_card_and_a_budget(db_dsn: str, tmp_path: Path) -> None:
    card = write_card(tmp_path / "rates.csv", [("CZ", Decimal("0.06"))])
    created = wa(
        db_dsn,
        "campaign",
        "create",
        "--name",
        "b",
        "--template",
        "t",
        "--language",
        "en_US",
        "--phone-number-id",
        "1000001",
        "--rate-card",
        str(card),
        "--budget",
        "99.5",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert (doc["budget"], doc["budget_currency"]) == ("99.5", "EUR")
    status = json.loads(wa(db_dsn, "campaign", "status", str(doc["id"]), "--json").stdout)
    assert status["budget_committed"] == "0"
    bad = wa(
        db_dsn,
        "campaign",
        "create",
        "--name",
        "b",
        "--template",
        "t",
        "--language",
        "en_US",
        "--phone-number-id",
        "1000001",
        "--rate-card",
        str(tmp_path / "missing.csv"),
    )
    one_line_error(bad, "cannot read rate card")
    assert "\n" not in bad.stderr.strip()
