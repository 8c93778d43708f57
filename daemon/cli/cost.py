"""`campaign estimate ID --rate-card FILE.csv`, and the cost options of `campaign
create|update` (`--rate-card`, `--budget`, `--budget-currency`); registered by `cli.campaign`."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import asyncpg

from daemon.cli.common import Commands, positive_int, print_json, with_connection
from daemon.config import Config
from daemon.core.model import Campaign
from daemon.core.ratecard import CATEGORIES, RateCard
from daemon.errors import UsageError
from daemon.ops.cost import (
    committed_cost,
    estimate,
    estimate_dict,
    estimate_lines,
    parse_budget,
    read_rate_card,
    set_cost,
)

_KEEP = object()


def add_cost_options(parser: argparse.ArgumentParser) -> None:
    """`--rate-card`, `--budget`, `--budget-currency`."""
    parser.add_argument(
        "--rate-card",
        type=Path,
        metavar="FILE.csv",
        help="store these rates with the campaign (columns country,category,price,currency;"
        " docs/rate-card.example.csv)",
    )
    parser.add_argument(
        "--budget",
        metavar="AMOUNT",
        help="pause the campaign (reason budget) before a message would make billed plus"
        " in-flight cost pass AMOUNT ('none': no budget); needs a rate card",
    )
    parser.add_argument(
        "--budget-currency",
        metavar="CUR",
        help="the budget's currency, checked against the rate card's (default: the card's)",
    )


def add_actions(sub: Commands) -> None:
    """Add `estimate` to `campaign`'s actions."""
    p = sub.add_parser(
        "estimate",
        help="what the campaign costs by a rate card, by country and category",
        description="Price the campaign's contacts that cost a message (not invalid,"
        " suppressed, removed, canceled or failed) by a rate card: the remaining sends and the"
        " whole campaign, by recipient country and pricing category.",
    )
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument(
        "--rate-card",
        type=Path,
        metavar="FILE.csv",
        help="the rates (default: the campaign's stored rate card)",
    )
    p.add_argument(
        "--category",
        choices=CATEGORIES,
        help="price as this category (default: the template's; unknown: marketing)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (amounts as decimal strings)")
    p.set_defaults(handler=cmd_campaign_estimate)


def cost_given(args: argparse.Namespace) -> bool:
    """Whether `args` carry a cost option."""
    return any(
        getattr(args, name, None) is not None for name in ("rate_card", "budget", "budget_currency")
    )


class CostChange:
    """The cost options of a command, read and checked before the database is touched."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.card: RateCard | None = None
        self.card_name: str | None = None
        if getattr(args, "rate_card", None) is not None:
            self.card = read_rate_card(args.rate_card)
            self.card_name = args.rate_card.name
        raw = getattr(args, "budget", None)
        self.budget: object = _KEEP if raw is None else parse_budget(raw)
        self.currency: str | None = getattr(args, "budget_currency", None)
        if self.currency is not None and self.budget is _KEEP:
            raise UsageError("--budget-currency goes with --budget AMOUNT")

    @property
    def empty(self) -> bool:
        """No cost option given."""
        return self.card is None and self.budget is _KEEP and self.currency is None

    async def apply(self, conn: asyncpg.Connection, campaign_id: int) -> Campaign | None:
        """Store the rate card and budget (None when there is nothing to store)."""
        if self.empty:
            return None
        return await set_cost(
            conn,
            campaign_id,
            card=self.card,
            card_name=self.card_name,
            budget=self.budget,
            currency=self.currency,
            keep=_KEEP,
        )


def cmd_campaign_estimate(args: argparse.Namespace, config: Config) -> int:
    """`campaign estimate ID [--rate-card FILE]`: messages and cost by country and category."""
    card = read_rate_card(args.rate_card) if args.rate_card is not None else None

    async def work(conn: asyncpg.Connection) -> int:
        result = await estimate(conn, args.id, card, args.category)
        if args.json:
            print_json(estimate_dict(result))
        else:
            print("\n".join(estimate_lines(result)))
        return 0

    return with_connection(config, work)


async def committed_line(
    conn: asyncpg.Connection, campaign: Campaign
) -> tuple[Decimal, str] | None:
    """A budget campaign's committed cost and the status line saying it (None: no budget)."""
    if campaign.budget is None:
        return None
    spent = await committed_cost(conn, campaign)
    currency = campaign.budget_currency or ""
    return spent, (f"Committed: {spent:f} of {campaign.budget:f} {currency} (billed + in flight)")
