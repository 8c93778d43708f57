"""The contact and campaign state model: states, labels, events and every allowed transition.

Pure data and functions; the database enforces the same state values (enum types) and the
store applies these rules in SQL, with tests that both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ContactState(StrEnum):
    """A contact's state; the values are the database's."""

    INITIAL = "initial"
    INVALID_RECORD = "invalid_record"
    IN_PROGRESS = "in_progress"
    RETRY_SCHEDULED = "retry_scheduled"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    DELIVERY_FAILED = "delivery_failed"
    SENDING_FAILED = "sending_failed"
    ERROR = "error"
    CANCELED_BY_ADMIN = "canceled_by_admin"
    REMOVED = "removed"
    SUCCESSFULLY_SUBMITTED = "successfully_submitted"

    @property
    def label(self) -> str:
        """The name shown to people, e.g. "Delivery failed"."""
        return CONTACT_LABELS[self]


CONTACT_LABELS: Mapping[ContactState, str] = {
    ContactState.INITIAL: "Initial",
    ContactState.INVALID_RECORD: "Invalid record",
    ContactState.IN_PROGRESS: "In progress",
    ContactState.RETRY_SCHEDULED: "Retry scheduled",
    ContactState.SENT: "Sent",
    ContactState.DELIVERED: "Delivered",
    ContactState.READ: "Read",
    ContactState.DELIVERY_FAILED: "Delivery failed",
    ContactState.SENDING_FAILED: "Sending failed",
    ContactState.ERROR: "Error",
    ContactState.CANCELED_BY_ADMIN: "Canceled by admin",
    ContactState.REMOVED: "Removed",
    ContactState.SUCCESSFULLY_SUBMITTED: "Successfully Submitted",
}

# A campaign is done when no contact is in one of these.
PENDING_STATES = frozenset(
    {ContactState.INITIAL, ContactState.IN_PROGRESS, ContactState.RETRY_SCHEDULED}
)
FINAL_STATES = frozenset(ContactState) - PENDING_STATES


class ContactEvent(StrEnum):
    """What can happen to a contact; `next_state` says where each event takes it."""

    IMPORTED = "imported"
    REJECTED_AT_IMPORT = "rejected_at_import"
    CLAIMED = "claimed"
    RELEASED_UNSENT = "released_unsent"  # claimed but never sent: back to initial
    ACCEPTED = "accepted"
    RETRY_SCHEDULED = "retry_scheduled"  # transient failure, or an outcome we cannot know
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    REFUSED = "refused"  # permanent refusal for this recipient
    RECEIPT_SENT = "receipt_sent"
    RECEIPT_DELIVERED = "receipt_delivered"
    RECEIPT_READ = "receipt_read"
    RECEIPT_FAILED = "receipt_failed"
    CANCELED = "canceled"
    REMOVED = "removed"


S = ContactState
E = ContactEvent

# States in which a message may have left (or may yet leave) for the recipient without a
# receipt having said so; a receipt is evidence and moves them forward.
_UNCONFIRMED = frozenset({S.IN_PROGRESS, S.RETRY_SCHEDULED, S.ERROR, S.CANCELED_BY_ADMIN})
_SENT_LIKE = frozenset({S.SENT, S.SUCCESSFULLY_SUBMITTED})

_TRANSITIONS: dict[tuple[ContactState | None, ContactEvent], ContactState] = {
    (None, E.IMPORTED): S.INITIAL,
    (None, E.REJECTED_AT_IMPORT): S.INVALID_RECORD,
    (S.INITIAL, E.CLAIMED): S.IN_PROGRESS,
    (S.RETRY_SCHEDULED, E.CLAIMED): S.IN_PROGRESS,
    (S.IN_PROGRESS, E.RELEASED_UNSENT): S.INITIAL,
    (S.IN_PROGRESS, E.ACCEPTED): S.SENT,
    (S.IN_PROGRESS, E.RETRY_SCHEDULED): S.RETRY_SCHEDULED,
    (S.IN_PROGRESS, E.ATTEMPTS_EXHAUSTED): S.ERROR,
    (S.IN_PROGRESS, E.REFUSED): S.SENDING_FAILED,
    (S.INITIAL, E.CANCELED): S.CANCELED_BY_ADMIN,
    (S.RETRY_SCHEDULED, E.CANCELED): S.CANCELED_BY_ADMIN,
    (S.INITIAL, E.REMOVED): S.REMOVED,
    (S.RETRY_SCHEDULED, E.REMOVED): S.REMOVED,
}
for _state in _UNCONFIRMED | _SENT_LIKE:
    _TRANSITIONS[(_state, E.RECEIPT_SENT)] = S.SENT
for _state in _UNCONFIRMED | _SENT_LIKE | {S.DELIVERY_FAILED}:
    # delivered/read after failed: multi-device users can produce both; delivery is proof.
    _TRANSITIONS[(_state, E.RECEIPT_DELIVERED)] = S.DELIVERED
    _TRANSITIONS[(_state, E.RECEIPT_READ)] = S.READ
for _state in _UNCONFIRMED | _SENT_LIKE:
    _TRANSITIONS[(_state, E.RECEIPT_FAILED)] = S.DELIVERY_FAILED
_TRANSITIONS[(S.DELIVERED, E.RECEIPT_READ)] = S.READ

# Receipts that change nothing: duplicates, and statuses that would move backwards. They are
# recorded as events but are not errors.
_RECEIPT_NO_OPS = frozenset(
    {
        (S.SENT, E.RECEIPT_SENT),
        (S.DELIVERED, E.RECEIPT_SENT),
        (S.READ, E.RECEIPT_SENT),
        (S.DELIVERY_FAILED, E.RECEIPT_SENT),
        (S.DELIVERED, E.RECEIPT_DELIVERED),
        (S.READ, E.RECEIPT_DELIVERED),
        (S.READ, E.RECEIPT_READ),
        (S.DELIVERED, E.RECEIPT_FAILED),
        (S.READ, E.RECEIPT_FAILED),
        (S.DELIVERY_FAILED, E.RECEIPT_FAILED),
    }
)
_TRANSITIONS.pop((S.SENT, E.RECEIPT_SENT))


class ForbiddenTransition(ValueError):
    """A contact event its state does not allow."""

    def __init__(self, state: ContactState | None, event: ContactEvent) -> None:
        where = state.label if state else "(new)"
        super().__init__(f"contact in state {where!r} cannot take event {event.value!r}")
        self.state = state
        self.event = event


def next_state(state: ContactState | None, event: ContactEvent) -> ContactState:
    """The state after `event`: the same state for an ignorable receipt, else
    ForbiddenTransition."""
    target = _TRANSITIONS.get((state, event))
    if target is not None:
        return target
    if state is not None and (state, event) in _RECEIPT_NO_OPS:
        return state
    raise ForbiddenTransition(state, event)


RECEIPT_EVENTS: Mapping[str, ContactEvent] = {
    "sent": E.RECEIPT_SENT,
    "delivered": E.RECEIPT_DELIVERED,
    "read": E.RECEIPT_READ,
    "failed": E.RECEIPT_FAILED,
}


class CampaignState(StrEnum):
    """A campaign's state; the values are the database's."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"  # `campaign start ID --at TIME`: waits for its start time
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELED = "canceled"


class CampaignCommand(StrEnum):
    """What an operator (or the daemon, for `finish`) asks of a campaign."""

    START = "start"
    SCHEDULE = "schedule"  # `campaign start ID --at TIME`
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    FINISH = "finish"  # by the daemon, when no contact is pending


_CAMPAIGN_TRANSITIONS: Mapping[tuple[CampaignState, CampaignCommand], CampaignState] = {
    (CampaignState.DRAFT, CampaignCommand.START): CampaignState.RUNNING,
    (CampaignState.DRAFT, CampaignCommand.SCHEDULE): CampaignState.SCHEDULED,
    (CampaignState.SCHEDULED, CampaignCommand.SCHEDULE): CampaignState.SCHEDULED,  # moved
    # Its start time came (a daemon starts it), or `campaign start ID` starts it now.
    (CampaignState.SCHEDULED, CampaignCommand.START): CampaignState.RUNNING,
    (CampaignState.SCHEDULED, CampaignCommand.PAUSE): CampaignState.PAUSED,
    (CampaignState.SCHEDULED, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.RUNNING, CampaignCommand.PAUSE): CampaignState.PAUSED,
    # (A campaign paused before its start time resumes as scheduled: resume_campaign.)
    (CampaignState.PAUSED, CampaignCommand.RESUME): CampaignState.RUNNING,
    (CampaignState.DRAFT, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.RUNNING, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.PAUSED, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.RUNNING, CampaignCommand.FINISH): CampaignState.FINISHED,
}

# Contacts may be imported or removed only while the campaign is not sending.
EDITABLE_CAMPAIGN_STATES = frozenset({CampaignState.DRAFT, CampaignState.PAUSED})


class ForbiddenCampaignTransition(ValueError):
    """A campaign command its state does not allow."""

    def __init__(self, state: CampaignState, command: CampaignCommand) -> None:
        super().__init__(f"cannot {command.value} a campaign that is {state.value}")
        self.state = state
        self.command = command


def campaign_next_state(state: CampaignState, command: CampaignCommand) -> CampaignState:
    """The state `command` takes a campaign in `state` to; ForbiddenCampaignTransition if none."""
    target = _CAMPAIGN_TRANSITIONS.get((state, command))
    if target is None:
        raise ForbiddenCampaignTransition(state, command)
    return target
