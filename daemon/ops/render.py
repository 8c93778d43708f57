"""Text and JSON renderings of campaigns for the CLI."""

from __future__ import annotations

from typing import Any

from daemon.core.model import Campaign, CampaignProgress
from daemon.core.states import ContactState


def progress_bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def campaign_line(c: Campaign) -> str:
    reason = c.pause_reason or c.hold_reason
    extra = f"  ({reason})" if reason else ""
    return (
        f"{c.id:>6}  {c.state.value:<9} {c.name}  [{c.template.name}/{c.template.language}]{extra}"
    )


def campaign_dict(c: Campaign) -> dict[str, Any]:
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
    }


def progress_dict(p: CampaignProgress) -> dict[str, Any]:
    return {
        **campaign_dict(p.campaign),
        "total": p.total,
        "counts": {state.value: p.counts.get(state, 0) for state in ContactState},
        "labels": {state.value: state.label for state in ContactState},
        "done": p.done,
        "progress_percent": round(p.percent_done, 2),
    }


def progress_table(
    p: CampaignProgress, *, rate: float | None = None, eta_s: float | None = None
) -> str:
    c = p.campaign
    lines = [f"Campaign {c.id} {c.name!r}: {c.state.value}"]
    spec = c.template_spec
    lines.append(
        f"Template: {spec.name} ({spec.language}), {spec.source.value}"
        + (f", {spec.definition.category}" if spec.definition.category else "")
    )
    if c.pause_reason:
        lines.append(f"Paused: {c.pause_reason}")
    if c.hold_reason:
        lines.append(f"Held: {c.hold_reason}")
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
