"""The capped claim (`[limits] per_contact`): claim a campaign's contacts under the frequency
caps per phone, exactly across daemons (SQL in sql/queries/caps.sql, rules in core.caps).

One transaction: the candidates are row-locked (as the plain claim selects them), their
phones advisory-locked in one order, the phones' earlier messages read (after the locks, so
a claim another daemon committed meanwhile is seen), then those under the caps are claimed
and the rest wait (not_before = when the cap frees them) or fail (`frequency_cap`, when that
is after the campaign's finish-by).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from daemon.core.caps import CapRule, category_counts, decide, longest_period
from daemon.db.sender_store import CURSOR_START, ClaimCursor, ClaimedContact
from daemon.db.sql import query


@dataclass(frozen=True)
class CapPolicy:
    """The configured caps: the rules, and the template categories that count (as Meta
    spells them, "MARKETING")."""

    rules: tuple[CapRule, ...]
    categories: tuple[str, ...]

    def applies_to(self, category: str | None) -> bool:
        """Whether a campaign of this template category is capped."""
        return bool(self.rules) and category_counts(category, self.categories)


@dataclass
class CappedClaim:
    """What a capped claim did: the contacts claimed, and how many it held back."""

    claimed: list[ClaimedContact] = field(default_factory=list)
    waiting: int = 0  # not_before moved to when their cap frees them
    failed: int = 0  # sending_failed, frequency_cap
    candidates: int = 0


async def claim_capped(
    conn: asyncpg.Connection,
    campaign_id: int,
    daemon_id: str,
    lease_s: float,
    limit: int,
    policy: CapPolicy,
    now: datetime,
    *,
    after: ClaimCursor = CURSOR_START,
    finish_by: datetime | None = None,
) -> CappedClaim:
    """Claim up to `limit` due contacts of a campaign under the caps (see the module)."""
    result = CappedClaim()
    async with conn.transaction():
        rows = await conn.fetch(
            query("caps_candidates"), campaign_id, limit, after[1], now, after[0]
        )
        if not rows:
            return result
        result.candidates = len(rows)
        phones = [r["phone"] for r in rows]
        await conn.execute(query("caps_lock_phones"), phones)
        since = now - longest_period(policy.rules)
        history = await conn.fetch(
            query("caps_history"), phones, campaign_id, since, list(policy.categories)
        )
        decision = decide(
            [(r["id"], r["phone"]) for r in rows],
            [(h["phone"], h["claimed_at"]) for h in history],
            policy.rules,
            now,
            finish_by,
        )
        if decision.send:
            claimed = await conn.fetch(
                query("claim_contact_ids"), list(decision.send), daemon_id, lease_s
            )
            result.claimed = [ClaimedContact(*r) for r in claimed]
        if decision.wait:
            ids, times = zip(*decision.wait, strict=True)
            await conn.execute(query("caps_defer"), list(ids), list(times))
        if decision.fail:
            ids = tuple(i for i, _ in decision.fail)
            titles = [_fail_title(policy, at) for _, at in decision.fail]
            await conn.execute(query("caps_fail"), list(ids), titles)
        result.waiting, result.failed = len(decision.wait), len(decision.fail)
    return result


def _fail_title(policy: CapPolicy, frees_at: datetime) -> str:
    rules = ", ".join(str(r) for r in policy.rules)
    return (
        f"frequency_cap: the phone's cap ({rules}) frees it at {frees_at:%Y-%m-%d %H:%M} UTC,"
        " after the campaign's finish-by"
    )
