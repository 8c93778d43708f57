"""Every (state, event) pair of the contact state model, against a table written out by hand."""

from __future__ import annotations

import pytest

from daemon.core.states import (
    CONTACT_LABELS,
    FINAL_STATES,
    PENDING_STATES,
    CampaignCommand,
    CampaignState,
    ContactEvent,
    ContactState,
    ForbiddenCampaignTransition,
    ForbiddenTransition,
    campaign_next_state,
    next_state,
)

S, E = ContactState, ContactEvent

# Rows: from-state; columns: events; "-" forbidden; "=" allowed, no change (ignored receipt).
_EVENTS = [
    E.CLAIMED,
    E.RELEASED_UNSENT,
    E.ACCEPTED,
    E.RETRY_SCHEDULED,
    E.ATTEMPTS_EXHAUSTED,
    E.REFUSED,
    E.RECEIPT_SENT,
    E.RECEIPT_DELIVERED,
    E.RECEIPT_READ,
    E.RECEIPT_FAILED,
    E.CANCELED,
    E.REMOVED,
    E.IMPORTED,
    E.REJECTED_AT_IMPORT,
]
_TABLE = {
    #                      claim  release  accept  retry  exhaust refuse  r_sent r_deliv r_read  r_failed cancel remove import reject
    S.INITIAL: [
        "in_progress",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "canceled_by_admin",
        "removed",
        "-",
        "-",
    ],
    S.INVALID_RECORD: ["-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"],
    S.IN_PROGRESS: [
        "-",
        "initial",
        "sent",
        "retry_scheduled",
        "error",
        "sending_failed",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "-",
        "-",
        "-",
        "-",
    ],
    S.RETRY_SCHEDULED: [
        "in_progress",
        "-",
        "-",
        "-",
        "-",
        "-",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "canceled_by_admin",
        "removed",
        "-",
        "-",
    ],
    S.SENT: [
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "=",
        "delivered",
        "read",
        "delivery_failed",
        "-",
        "-",
        "-",
        "-",
    ],
    S.DELIVERED: ["-", "-", "-", "-", "-", "-", "=", "=", "read", "=", "-", "-", "-", "-"],
    S.READ: ["-", "-", "-", "-", "-", "-", "=", "=", "=", "=", "-", "-", "-", "-"],
    S.DELIVERY_FAILED: [
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "=",
        "delivered",
        "read",
        "=",
        "-",
        "-",
        "-",
        "-",
    ],
    S.SENDING_FAILED: ["-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"],
    S.ERROR: [
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "-",
        "-",
        "-",
        "-",
    ],
    S.CANCELED_BY_ADMIN: [
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "-",
        "-",
        "-",
        "-",
    ],
    S.REMOVED: ["-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"],
    S.SUCCESSFULLY_SUBMITTED: [
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "sent",
        "delivered",
        "read",
        "delivery_failed",
        "-",
        "-",
        "-",
        "-",
    ],
}

_CASES = [
    (state, event, expected)
    for state, row in _TABLE.items()
    for event, expected in zip(_EVENTS, row, strict=True)
]


def test_table_covers_every_state_and_event() -> None:
    assert set(_TABLE) == set(ContactState)
    assert set(_EVENTS) == set(ContactEvent)


@pytest.mark.parametrize(("state", "event", "expected"), _CASES, ids=lambda v: str(v))
def test_transition(state: ContactState, event: ContactEvent, expected: str) -> None:
    if expected == "-":
        with pytest.raises(ForbiddenTransition):
            next_state(state, event)
    elif expected == "=":
        assert next_state(state, event) is state
    else:
        assert next_state(state, event) is ContactState(expected)


@pytest.mark.parametrize("event", list(ContactEvent))
def test_new_contacts_only_come_from_import(event: ContactEvent) -> None:
    if event is E.IMPORTED:
        assert next_state(None, event) is S.INITIAL
    elif event is E.REJECTED_AT_IMPORT:
        assert next_state(None, event) is S.INVALID_RECORD
    else:
        with pytest.raises(ForbiddenTransition):
            next_state(None, event)


def test_labels_are_word_for_word() -> None:
    assert {s.value: s.label for s in ContactState} == {
        "initial": "Initial",
        "invalid_record": "Invalid record",
        "in_progress": "In progress",
        "retry_scheduled": "Retry scheduled",
        "sent": "Sent",
        "delivered": "Delivered",
        "read": "Read",
        "delivery_failed": "Delivery failed",
        "sending_failed": "Sending failed",
        "error": "Error",
        "canceled_by_admin": "Canceled by admin",
        "removed": "Removed",
        "successfully_submitted": "Successfully Submitted",
    }
    assert set(CONTACT_LABELS) == set(ContactState)


def test_read_without_delivered_sets_read() -> None:
    assert next_state(S.SENT, E.RECEIPT_READ) is S.READ


def test_receipts_never_move_backwards() -> None:
    assert next_state(S.READ, E.RECEIPT_DELIVERED) is S.READ
    assert next_state(S.DELIVERED, E.RECEIPT_SENT) is S.DELIVERED


def test_pending_and_final_partition_the_states() -> None:
    assert set(ContactState) == PENDING_STATES | FINAL_STATES
    assert not PENDING_STATES & FINAL_STATES


_CAMPAIGN = {
    (CampaignState.DRAFT, CampaignCommand.START): CampaignState.RUNNING,
    (CampaignState.RUNNING, CampaignCommand.PAUSE): CampaignState.PAUSED,
    (CampaignState.PAUSED, CampaignCommand.RESUME): CampaignState.RUNNING,
    (CampaignState.DRAFT, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.RUNNING, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.PAUSED, CampaignCommand.CANCEL): CampaignState.CANCELED,
    (CampaignState.RUNNING, CampaignCommand.FINISH): CampaignState.FINISHED,
    (CampaignState.DRAFT, CampaignCommand.SCHEDULE): CampaignState.SCHEDULED,
    (CampaignState.SCHEDULED, CampaignCommand.SCHEDULE): CampaignState.SCHEDULED,
    (CampaignState.SCHEDULED, CampaignCommand.START): CampaignState.RUNNING,
    (CampaignState.SCHEDULED, CampaignCommand.PAUSE): CampaignState.PAUSED,
    (CampaignState.SCHEDULED, CampaignCommand.CANCEL): CampaignState.CANCELED,
}


@pytest.mark.parametrize("state", list(CampaignState))
@pytest.mark.parametrize("command", list(CampaignCommand))
def test_campaign_transition(state: CampaignState, command: CampaignCommand) -> None:
    expected = _CAMPAIGN.get((state, command))
    if expected is None:
        with pytest.raises(ForbiddenCampaignTransition):
            campaign_next_state(state, command)
    else:
        assert campaign_next_state(state, command) is expected
