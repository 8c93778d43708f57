"""The sender's counters (`Sender.stats`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.core.outcomes import OutcomeKind


@dataclass
class SenderStats:
    """The sender's counters since it started."""

    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    released: int = 0
    unknown_outcome: int = 0
    rate_wait_s: float = 0.0

    def count(self, kind: OutcomeKind) -> None:
        # The member itself is the key: a StrEnum hashes and compares as its value, and
        # reading `.value` goes through a Python-level property on every send.
        """Count one answer of this kind."""
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
