"""What template and number health events mean for campaigns, without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class TemplateAction(StrEnum):
    """What a template status event does to the campaigns that send the template."""

    PAUSE = "pause"  # running campaigns are paused by Meta
    RESUME = "resume"  # campaigns Meta paused run again
    RECORD = "record"  # only the catalogue changes


PAUSING_STATUSES: Final = frozenset(
    {
        "PAUSED",
        "DISABLED",
        "REJECTED",
        "FLAGGED",
        "PENDING_DELETION",
        "DELETED",
        "ARCHIVED",
        "LOCKED",
    }
)
"""Statuses under which sending the template fails (132015/132016/132001) or harms the number."""
APPROVING_STATUSES: Final = frozenset({"APPROVED", "REINSTATED", "UNARCHIVED", "UNLOCKED"})
"""Events after which the template can be sent again; the catalogue says APPROVED."""


@dataclass(frozen=True, slots=True)
class TemplateEffect:
    """The catalogue status to store and what happens to the campaigns."""

    catalogue_status: str
    action: TemplateAction


def template_status_effect(event: str) -> TemplateEffect:
    """`message_template_status_update`'s event -> the catalogue status and the action."""
    event = event.upper()
    if event in APPROVING_STATUSES:
        return TemplateEffect("APPROVED", TemplateAction.RESUME)
    if event in PAUSING_STATUSES:
        return TemplateEffect(event, TemplateAction.PAUSE)
    return TemplateEffect(event, TemplateAction.RECORD)


def template_pause_reason(name: str, language: str, event: str, reason: str | None) -> str:
    """The pause reason shown for a campaign Meta's template event paused."""
    why = f": {reason}" if reason and reason.upper() != "NONE" else ""
    return f"template {name} ({language}) {event.upper()} by Meta{why}"


@dataclass(frozen=True, slots=True)
class NumberEffect:
    """What a `phone_number_quality_update` changes: the marketing rate factor and whether
    the number may go up to `sender.max_rate_per_second` (None: unchanged)."""

    marketing_rate_factor: float | None
    throughput_upgraded: bool | None


def number_event_effect(event: str, flagged_rate_factor: float) -> NumberEffect:
    """FLAGGED / DOWNGRADE scale the number's marketing rate by `flagged_rate_factor`;
    UNFLAGGED / UPGRADE restore it; THROUGHPUT_UPGRADE lifts the number's ceiling."""
    event = event.upper()
    if event in ("FLAGGED", "DOWNGRADE"):
        return NumberEffect(flagged_rate_factor, None)
    if event in ("UNFLAGGED", "UPGRADE"):
        return NumberEffect(1.0, None)
    if event == "THROUGHPUT_UPGRADE":
        return NumberEffect(None, True)
    return NumberEffect(None, None)
