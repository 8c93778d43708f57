"""Figures of one run from its raw data: the mock's accepted messages, the contact rows, the
latency histograms, the kill times. Pure: no I/O, times are epoch seconds passed in.

Who sent what is read from ``biz_opaque_callback_data`` (``ws1:campaign:contact:attempt``),
which every system puts in its bodies, so the invariants do not trust the system under test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.core.payload import decode_callback_data
from daemon.core.states import PENDING_STATES
from daemon.loadtest.latency import Histogram

SENT_LIKE = frozenset({"sent", "delivered", "read", "delivery_failed", "successfully_submitted"})
PENDING = frozenset(state.value for state in PENDING_STATES)
# A copy accepted this close before a SIGKILL may have had its result die with the daemon.
KILL_WINDOW_S = 2.0
EXAMPLES = 10  # unexplained duplicates described in the result
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class Accepted:
    """One accepted message, as the mock logged it."""

    contact_id: int | None
    attempt: int | None
    wamid: str
    at: float


@dataclass
class ContactRows:
    """The contacts of a run, column-wise (epoch seconds for times)."""

    ids: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    claimed_at: list[float | None] = field(default_factory=list)
    sent_at: list[float | None] = field(default_factory=list)
    wamid: list[str | None] = field(default_factory=list)
    # (contact, attempt) -> (outcome declared unknown, a known send recorded), for the contacts
    # with more than one attempt (contact_attempts); None: the database keeps no such history.
    attempt_knowledge: dict[tuple[int, int], tuple[bool, bool]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def parse_accepted(
    callbacks: Sequence[str | None], wamids: Sequence[str], times: Sequence[float]
) -> list[Accepted]:
    out = []
    for callback, wamid, at in zip(callbacks, wamids, times, strict=True):
        ref = decode_callback_data(callback)
        out.append(
            Accepted(
                ref.contact_id if ref else None,
                ref.attempt if ref else None,
                wamid,
                at,
            )
        )
    return out


def per_second(times: Iterable[float], t0: float, length: int | None = None) -> list[int]:
    """Counts per whole second since ``t0`` (second k covers [t0+k, t0+k+1))."""
    counts: dict[int, int] = defaultdict(int)
    for t in times:
        counts[max(0, math.floor(t - t0))] += 1
    size = length if length is not None else (max(counts) + 1 if counts else 0)
    return [counts.get(k, 0) for k in range(size)]


def throughput(times: Sequence[float], t0: float) -> dict[str, Any]:
    """Overall and sustained rates of events at ``times`` (epoch), run started at ``t0``.

    ``per_s``: count over first-to-last span; ``sustained_per_s``: the same without the first
    and the last second (start-up burst and tail); ``min_full_second``: the slowest whole second
    in between.
    """
    if not times:
        return {"count": 0, "per_s": None, "sustained_per_s": None, "first_s": None}
    first, last = min(times), max(times)
    span = last - first
    out: dict[str, Any] = {
        "count": len(times),
        "first_s": round(first - t0, 3),
        "last_s": round(last - t0, 3),
        "per_s": round(len(times) / span, 1) if span > 0 else None,
    }
    if span > 4.0:
        inner = [t for t in times if first + 1.0 <= t < last - 1.0]
        out["sustained_per_s"] = round(len(inner) / (span - 2.0), 1)
        seconds = per_second(inner, first + 1.0, int(span - 2.0))
        out["min_full_second"] = min(seconds) if seconds else None
        out["max_full_second"] = max(seconds) if seconds else None
    else:
        out["sustained_per_s"] = out["per_s"]
    return out


def duplicates(
    accepted: Sequence[Accepted],
    recorded_wamid: Mapping[int, str | None],
    kills: Sequence[float],
    knowledge: Mapping[tuple[int, int], tuple[bool, bool]] | None = None,
    examples: list[dict[str, Any]] | None = None,
    t0: float = 0.0,
) -> dict[str, int]:
    """Contacts that got more than one message, and how many of those had an unknown outcome.

    A duplicate is explained when the outcome of its first copy was genuinely unknown to the
    daemon. With the per-attempt history (``knowledge``, contact_attempts) that is exact: the
    first copy's attempt was declared unknown (lease recovery, shutdown cut-off), or no known
    send was ever recorded for it. Without it, a heuristic: the first copy's wamid never reached
    the database, or it was accepted within ``KILL_WINDOW_S`` before a SIGKILL (a late receipt
    can record the first copy's wamid after its retry went out, which this misreads). Two
    copies carrying the same attempt number would mean two senders held the same claim: never
    explained, and also counted apart. Up to ``EXAMPLES`` unexplained ones are described in
    ``examples`` (when given).
    """
    by_contact: dict[int, list[Accepted]] = defaultdict(list)
    for message in accepted:
        if message.contact_id is not None:
            by_contact[message.contact_id].append(message)
    kill_times = sorted(kills)
    duplicated = explained = same_attempt = extra = 0
    for contact_id, copies in by_contact.items():
        if len(copies) < 2:
            continue
        duplicated += 1
        extra += len(copies) - 1
        attempts = [c.attempt for c in copies]
        if len(set(attempts)) < len(attempts):
            same_attempt += 1
            continue
        first = min(copies, key=lambda c: c.at)
        if knowledge is not None and first.attempt is not None:
            unknown, known_sent = knowledge.get((contact_id, first.attempt), (False, False))
            if unknown or not known_sent:
                explained += 1
                continue
        elif recorded_wamid.get(contact_id) != first.wamid or _near_kill(first.at, kill_times):
            explained += 1
            continue
        if examples is not None and len(examples) < EXAMPLES:
            examples.append(
                {
                    "contact_id": contact_id,
                    "copies": [
                        {"attempt": c.attempt, "at_s": round(c.at - t0, 3), "wamid": c.wamid}
                        for c in sorted(copies, key=lambda c: c.at)
                    ],
                    "recorded_wamid": recorded_wamid.get(contact_id),
                    "kills_s": [
                        round(k - t0, 3)
                        for k in kill_times
                        if first.at - 5 <= k <= max(c.at for c in copies) + 5
                    ],
                }
            )
    return {
        "duplicated_contacts": duplicated,
        "extra_messages": extra,
        "explained_by_unknown_outcome": explained,
        "unexplained": duplicated - explained,
        "same_attempt": same_attempt,
    }


def _near_kill(at: float, kills: Sequence[float]) -> bool:
    return any(at <= k <= at + KILL_WINDOW_S for k in kills)


def result_consistency(
    accepted: Sequence[Accepted],
    rows: ContactRows,
    kills: Sequence[float] = (),
    *,
    t0: float = 0.0,
    examples: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Accepted messages whose contact does not show it, and sent contacts the mock never saw.

    An accepted message missing from the database is a lost result, unless its daemon was
    SIGKILLed right after (``KILL_WINDOW_S``) and the contact then ran out of attempts: its
    outcome was genuinely unknown (with receipts off, nothing can tell), counted apart.
    The first lost ones are appended to ``examples`` (times relative to ``t0``) to look into.
    """
    copies_of: dict[int, list[Accepted]] = defaultdict(list)
    for message in accepted:
        if message.contact_id is not None:
            copies_of[message.contact_id].append(message)
    kill_times = sorted(kills)
    lost = unknown = phantom = 0
    rows_ = zip(rows.ids, rows.states, rows.wamid, rows.attempts, strict=True)
    for contact_id, state, wamid, attempts in rows_:
        copies = copies_of.get(contact_id, [])
        if copies and state not in SENT_LIKE:
            if state == "error" and any(_near_kill(c.at, kill_times) for c in copies):
                unknown += 1
            else:
                lost += 1
                if examples is not None and len(examples) < MAX_EXAMPLES:
                    examples.append(
                        {
                            "contact_id": contact_id,
                            "state": state,
                            "attempts": attempts,
                            "accepted": [[c.attempt, round(c.at - t0, 3)] for c in copies],
                        }
                    )
        if state in SENT_LIKE and wamid is not None and wamid not in {c.wamid for c in copies}:
            phantom += 1
    return {
        "accepted_not_recorded": lost,
        "accepted_outcome_unknown": unknown,
        "recorded_not_accepted": phantom,
    }


def claim_to_send(
    accepted: Sequence[Accepted], rows: ContactRows
) -> tuple[Histogram, dict[int, Histogram]]:
    """contacts.claimed_at (the claim of the last attempt) to the mock's acceptance of that
    attempt, overall and per epoch second of acceptance."""
    claimed = {
        cid: (attempt, at)
        for cid, attempt, at in zip(rows.ids, rows.attempts, rows.claimed_at, strict=True)
        if at is not None
    }
    total = Histogram()
    by_second: dict[int, Histogram] = {}
    for message in accepted:
        if message.contact_id is None:
            continue
        claim = claimed.get(message.contact_id)
        if claim is None or claim[0] != message.attempt:
            continue
        ms = max(0.0, (message.at - claim[1]) * 1000.0)
        total.add(ms)
        by_second.setdefault(int(message.at), Histogram()).add(ms)
    return total, by_second


def state_counts(rows: ContactRows) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for state in rows.states:
        counts[state] += 1
    return dict(sorted(counts.items()))


def non_final(rows: ContactRows) -> int:
    return sum(1 for state in rows.states if state in PENDING)


def percentile_series(
    by_second: Mapping[int, Histogram], t0_second: int, length: int
) -> dict[str, list[float | None]]:
    """p50/p99 of each second from epoch second ``t0_second`` on (None: no sample)."""
    p50: list[float | None] = []
    p99: list[float | None] = []
    for k in range(length):
        h = by_second.get(t0_second + k)
        p50.append(round(v, 3) if h and (v := h.percentile(50)) is not None else None)
        p99.append(round(v, 3) if h and (v := h.percentile(99)) is not None else None)
    return {"p50": p50, "p99": p99}


def count_after(times: Iterable[float], moment: float | None) -> int:
    if moment is None:
        return 0
    return sum(1 for t in times if t > moment)
