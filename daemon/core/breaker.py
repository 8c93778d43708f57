"""The refusal breaker: a run of identical per-contact refusals that are about the request,
not the person, means every contact is being refused the same way (a payload or template
mismatch): the campaign is paused instead of burning through its list.

Pure counting: the engine tells it each campaign's answers, in the order they came back.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.core.outcomes import REQUEST_SHAPED_CODES, Outcome, OutcomeKind


@dataclass(slots=True)
class Streak:
    """The current run of one campaign: the code refused and how many times in a row."""

    code: int
    count: int


class RefusalBreaker:
    """Counts, per campaign, identical refusals in a row with a request-shaped code
    (`REQUEST_SHAPED_CODES`); `threshold` 0 disables it.

    An accepted send ends the run (the sender does that inline: `streaks.pop(campaign_id)`
    when `streaks` is not empty); so does a refusal with another code, which starts its own.
    Transient answers (retried) neither count nor end a run."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.streaks: dict[int, Streak] = {}

    def observe(self, campaign_id: int, outcome: Outcome) -> str | None:
        """Count one answer that was not an acceptance; the pause reason when this one trips
        the breaker (exactly once per run), else None."""
        if not self.threshold:
            return None
        kind = outcome.kind
        if kind is not OutcomeKind.PERMANENT:
            if kind is OutcomeKind.ACCEPTED:
                self.streaks.pop(campaign_id, None)
            return None
        code = outcome.error_code
        if code is None or code not in REQUEST_SHAPED_CODES:
            self.streaks.pop(campaign_id, None)
            return None
        streak = self.streaks.get(campaign_id)
        if streak is None or streak.code != code:
            streak = self.streaks[campaign_id] = Streak(code, 0)
        streak.count += 1
        if streak.count != self.threshold:
            return None
        title = f" ({outcome.error_title})" if outcome.error_title else ""
        return (
            f"breaker: {streak.count} sends in a row refused with code {code}{title}; the"
            " request, not the recipients, looks wrong (check the template and its values)"
        )

    def forget(self, campaign_id: int) -> None:
        """The campaign stopped (paused, resumed later): start counting afresh."""
        self.streaks.pop(campaign_id, None)
