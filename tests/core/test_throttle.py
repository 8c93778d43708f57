"""The log throttle, as a table of event times."""

from __future__ import annotations

import pytest

from daemon.core.throttle import LogThrottle


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # Three a second: the fourth and fifth at 0.x are counted, reported with the next one.
        (
            [0.0, 0.1, 0.2, 0.3, 0.4, 1.0],
            [(True, 0), (True, 0), (True, 0), (False, 0), (False, 0), (True, 2)],
        ),
        # Spread out: every one is logged.
        ([0.0, 1.0, 2.0, 3.5], [(True, 0)] * 4),
        # A long flood: three per window, each window's first one reports the gap.
        (
            [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1],
            [
                (True, 0),
                (True, 0),
                (True, 0),
                (False, 0),
                (False, 0),
                (False, 0),
                (True, 3),
                (True, 0),
            ],
        ),
    ],
)
def test_at_most_so_many_lines_per_interval_and_the_rest_counted(
    times: list[float], expected: list[tuple[bool, int]]
) -> None:
    throttle = LogThrottle(per_interval=3, interval_s=1.0)
    assert [throttle.allow(t) for t in times] == expected
