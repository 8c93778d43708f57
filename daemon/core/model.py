"""Domain values shared by the layers: ids and the campaign as the daemon and CLI see it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NewType

from daemon.core.payload import Template
from daemon.core.states import CampaignState, ContactState
from daemon.core.template_spec import CampaignTemplate, TemplateSource, bind_template
from daemon.core.templates import legacy_template

CampaignId = NewType("CampaignId", int)
ContactId = NewType("ContactId", int)


@dataclass(frozen=True)
class Campaign:
    """A campaign as stored: its state, template, sending number and hold or pause reason."""

    id: CampaignId
    name: str
    state: CampaignState
    template: Template
    phone_number_id: str
    pause_reason: str | None
    hold_reason: str | None
    hold_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The stop number of its last pause or cancel (0: never stopped); see db.campaigns.
    stop_seq: int = 0
    # The template's binding to the contacts' values; a campaign from before the template
    # catalogue (or created without one) gets `legacy_spec(template)`.
    spec: CampaignTemplate | None = None
    # The country national numbers of its imports are read in (ISO 3166, e.g. "CZ").
    default_country: str | None = None
    # Planning (migration 0013): the scheduled start, the send window in the recipients' local
    # time (canonical text, core.windows) with the zone of numbers that tell none, finish-by.
    start_at: datetime | None = None
    send_window: str | None = None
    window_zone: str | None = None
    finish_by: datetime | None = None
    # The template's category as stored at create (MARKETING, UTILITY...; None: unknown), what
    # the frequency caps go by (core.caps).
    template_category: str | None = None
    # Cost (migration 0015): the most it may cost, in the currency of its stored rate card.
    budget: Decimal | None = None
    budget_currency: str | None = None
    rate_card: str | None = None

    @property
    def template_spec(self) -> CampaignTemplate:
        """The binding the body is built from (legacy campaigns: their param columns)."""
        return self.spec if self.spec is not None else legacy_spec(self.template)


@functools.lru_cache(maxsize=1024)
def legacy_spec(template: Template) -> CampaignTemplate:
    """The binding of a campaign known only by its template's name, language and body
    parameter columns (`--param`): a positional text body, unverified."""
    definition = legacy_template(template.name, template.language, len(template.param_columns))
    return bind_template(
        definition, source=TemplateSource.UNVERIFIED, param_columns=template.param_columns
    )


@dataclass(frozen=True)
class CampaignProgress:
    """A campaign with the number of its contacts in each state."""

    campaign: Campaign
    counts: dict[ContactState, int]
    # What Meta says about its template and sending number, and its replies (migration 0011):
    # {"paused_by", "template": {status, reason, quality, category, previous_category},
    #  "number": {quality_event, marketing_rate_factor, throughput_upgraded},
    #  "replies": {replies, opt_outs}}; None when not read.
    health: dict[str, Any] | None = None
    # With a send window: (pending contacts outside their window, when the next one opens).
    window_waiting: tuple[int, datetime | None] | None = None

    @property
    def total(self) -> int:
        """Every contact of the campaign."""
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Contacts in a final state (no longer pending)."""
        from daemon.core.states import PENDING_STATES

        return sum(n for state, n in self.counts.items() if state not in PENDING_STATES)

    @property
    def percent_done(self) -> float:
        """`done` as a percentage of `total` (100 for an empty campaign)."""
        return 100.0 * self.done / self.total if self.total else 100.0
