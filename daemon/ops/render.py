"""Text and JSON renderings for the CLI, and the one escaping helper every table or line of
user text goes through (`printable`): a campaign name holding ESC, CR or LF must not move the
operator's cursor, recolour the terminal, or forge a line of output."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from daemon.core.model import Campaign, CampaignProgress
from daemon.core.states import CampaignState, ContactState

# C0 and C1 controls, DEL, the bidirectional overrides and isolates (RTL tricks), and the
# Unicode line and paragraph separators. Other format characters (the zero-width joiner of
# emoji sequences) are shown as they are.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as text safe to print in a table or a line: control characters escaped
    (`\\x1b`, `\\r`, `\\n`, `\\u202e`); everything else as it is."""
    text = value if isinstance(value, str) else str(value)
    return _UNPRINTABLE.sub(_escape, text)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """A CSV cell Excel and LibreOffice will not run as a formula: a value starting with
    `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's advice); a
    plain number (`-5`, `+1.5`) stays as it is."""
    if not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value if value.strip() == value else "'" + value


def progress_bar(fraction: float, width: int = 30) -> str:
    """`[#####.....]`, `fraction` of it filled."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def utc_text(moment: datetime) -> str:
    """A time as the tables show it: `2026-12-24 08:00:00 UTC`."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def planning_lines(c: Campaign, waiting: tuple[int, datetime | None] | None) -> list[str]:
    """The campaign's scheduled start, send window and finish-by time, as status shows them."""
    lines: list[str] = []
    if c.state is CampaignState.SCHEDULED and c.start_at is not None:
        lines.append(f"Starts at: {utc_text(c.start_at)}")
    if c.send_window:
        zone = f", else {printable(c.window_zone)}" if c.window_zone else ""
        lines.append(f"Window: {printable(c.send_window)} (recipient's local time{zone})")
    if waiting is not None and c.send_window:
        count, next_open = waiting
        opens = f"; next opens {utc_text(next_open)}" if next_open is not None else ""
        lines.append(f"Waiting for their window: {count}{opens}")
    elif waiting is not None:  # no window: held back by the frequency caps ([limits])
        count, next_open = waiting
        frees = f"; the next is free {utc_text(next_open)}" if next_open is not None else ""
        lines.append(f"Waiting for a frequency cap: {count}{frees}")
    if c.finish_by is not None:
        lines.append(f"Finish by: {utc_text(c.finish_by)} (remaining contacts spread evenly)")
    if c.budget is not None:
        card = f", rate card {printable(c.rate_card)}" if c.rate_card else ""
        lines.append(f"Budget: {c.budget:f} {c.budget_currency or ''}{card}")
    return lines


def campaign_line(c: Campaign) -> str:
    """One line of `campaign list`: id, state, name, template, reason or start time."""
    reason = c.pause_reason or c.hold_reason
    if reason is None and c.state is CampaignState.SCHEDULED and c.start_at is not None:
        reason = f"starts {utc_text(c.start_at)}"
    extra = f"  ({printable(reason)})" if reason else ""
    template = f"{printable(c.template.name)}/{printable(c.template.language)}"
    return f"{c.id:>6}  {c.state.value:<9} {printable(c.name)}  [{template}]{extra}"


def campaign_dict(c: Campaign) -> dict[str, Any]:
    """The campaign for `--json` (JSON escapes control characters itself)."""
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state.value,
        "template": {
            "name": c.template.name,
            "language": c.template.language,
            "params": list(c.template.param_columns),
            # catalogue | file | unverified, and the values it takes (CSV column or constant)
            "source": c.template_spec.source.value,
            "category": c.template_spec.definition.category or None,
            "columns": list(c.template_spec.import_columns()[0]),
            "constants": dict(c.template_spec.constants),
        },
        "phone_number_id": c.phone_number_id,
        "pause_reason": c.pause_reason,
        "hold_reason": c.hold_reason,
        "created_at": c.created_at.isoformat(),
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "finished_at": c.finished_at.isoformat() if c.finished_at else None,
        "start_at": c.start_at.isoformat() if c.start_at else None,
        "send_window": c.send_window,
        "window_zone": c.window_zone,
        "finish_by": c.finish_by.isoformat() if c.finish_by else None,
        "budget": f"{c.budget:f}" if c.budget is not None else None,
        "budget_currency": c.budget_currency,
        "rate_card": c.rate_card,
    }


def progress_dict(p: CampaignProgress) -> dict[str, Any]:
    """The campaign with its counts by state, for `campaign status --json`."""
    return {
        **campaign_dict(p.campaign),
        "total": p.total,
        "counts": {state.value: p.counts.get(state, 0) for state in ContactState},
        "labels": {state.value: state.label for state in ContactState},
        "done": p.done,
        "progress_percent": round(p.percent_done, 2),
        "health": p.health or {},
        "window_waiting": None
        if p.window_waiting is None
        else {
            "contacts": p.window_waiting[0],
            "next_open": p.window_waiting[1].isoformat() if p.window_waiting[1] else None,
        },
    }


def health_lines(health: dict[str, Any]) -> list[str]:
    """What Meta reported about the campaign's template and number, and its replies."""
    lines: list[str] = []
    if health.get("paused_by"):
        lines.append(f"Paused by: {health['paused_by']}")
    template = health.get("template") or {}
    moved_from = template.get("previous_category")
    if health.get("category") and moved_from and moved_from != health["category"]:
        # the category caps, pricing and marketing suppression use (template_category_update)
        lines.append(
            f"Category: {printable(str(health['category']))}"
            f" (changed by Meta from {printable(str(moved_from))})"
        )
    parts = [f"{k} {printable(str(template[k]))}" for k in ("status", "quality") if k in template]
    if "category" in template:
        moved = template.get("previous_category")
        shown = f"{moved} -> {template['category']}" if moved else template["category"]
        parts.append(f"category {printable(str(shown))}")
    if parts:
        reason = template.get("reason")
        tail = f" ({printable(str(reason))})" if reason and reason != "NONE" else ""
        lines.append("Template health: " + ", ".join(parts) + tail)
    number = health.get("number") or {}
    if number.get("quality_event"):
        factor = number.get("marketing_rate_factor", 1.0)
        upgraded = ", throughput upgraded" if number.get("throughput_upgraded") else ""
        lines.append(
            f"Number health: {printable(str(number['quality_event']))},"
            f" marketing rate x{factor:g}{upgraded}"
        )
    replies = health.get("replies") or {}
    if replies.get("replies"):
        lines.append(f"Replies: {replies['replies']} ({replies.get('opt_outs', 0)} opt-outs)")
    return lines


def progress_table(
    p: CampaignProgress, *, rate: float | None = None, eta_s: float | None = None
) -> str:
    """The `campaign status` table: counts and shares by state, then the progress bar."""
    c = p.campaign
    lines = [f"Campaign {c.id} '{printable(c.name)}': {c.state.value}"]
    spec = c.template_spec
    lines.append(
        f"Template: {printable(spec.name)} ({printable(spec.language)}), {spec.source.value}"
        + (f", {printable(spec.definition.category)}" if spec.definition.category else "")
    )
    if c.pause_reason:
        lines.append(f"Paused: {printable(c.pause_reason)}")
    if c.hold_reason:
        lines.append(f"Held: {printable(c.hold_reason)}")
    lines.extend(planning_lines(c, p.window_waiting))
    lines.extend(health_lines(p.health or {}))
    lines.append(f"{'State':<24}{'Count':>10}{'%':>8}")
    total = p.total
    for state in ContactState:
        n = p.counts.get(state, 0)
        if state is ContactState.SUCCESSFULLY_SUBMITTED and n == 0:
            continue  # legacy state, shown only when old data has it
        pct = 100.0 * n / total if total else 0.0
        lines.append(f"{state.label:<24}{n:>10}{pct:>7.1f}%")
    lines.append(f"{'Total':<24}{total:>10}")
    bar = progress_bar(p.percent_done / 100)
    tail = f"Progress {bar} {p.percent_done:5.1f}% ({p.done}/{total} final)"
    if rate is not None:
        tail += f"  {rate:,.0f}/s"
    if eta_s is not None:
        tail += f"  ETA {eta_s:,.0f}s"
    lines.append(tail)
    return "\n".join(lines)
