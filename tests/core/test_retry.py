from __future__ import annotations

import pytest
import structlog
import tenacity
from structlog.testing import capture_logs

from daemon.core.retry import RetryPolicy, database_retrying

NO_JITTER = RetryPolicy(max_attempts=5, initial_s=1.0, max_s=60.0, jitter_s=0.0)


@pytest.mark.parametrize(
    ("policy", "attempt", "delay"),
    [
        (NO_JITTER, 1, 1.0),
        (NO_JITTER, 2, 2.0),
        (NO_JITTER, 3, 4.0),
        (NO_JITTER, 4, 8.0),
        (NO_JITTER, 5, None),
        (NO_JITTER, 6, None),
        (RetryPolicy(10, 2.0, 30.0, 0.0), 4, 16.0),
        (RetryPolicy(10, 2.0, 30.0, 0.0), 5, 30.0),
        (RetryPolicy(10, 2.0, 30.0, 0.0), 9, 30.0),
        (RetryPolicy(10, 2.0, 30.0, 0.0), 10, None),
        (RetryPolicy(200, 1.0, 60.0, 0.0), 199, 60.0),
        (RetryPolicy(1, 1.0, 60.0, 0.0), 1, None),
    ],
)
def test_next_delay_doubles_up_to_the_cap_and_ends_with_the_attempts(
    policy: RetryPolicy, attempt: int, delay: float | None
) -> None:
    assert policy.next_delay(attempt) == delay


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.5), (3, 4.5), (6, 20.0), (9, 20.0)])
def test_jitter_adds_at_most_jitter_s_and_never_passes_the_cap(
    monkeypatch: pytest.MonkeyPatch, attempt: int, delay: float
) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)  # tenacity's jitter source
    assert RetryPolicy(10, 1.0, 20.0, 0.5).next_delay(attempt) == delay


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_jittered_delays_stay_within_bounds(attempt: int) -> None:
    policy = RetryPolicy(5, 1.0, 60.0, jitter_s=2.0)
    base = 2.0 ** (attempt - 1)
    for _ in range(200):
        delay = policy.next_delay(attempt)
        assert delay is not None
        assert base <= delay <= base + 2.0


def test_the_schedule_is_what_tenacity_itself_sleeps() -> None:
    policy = RetryPolicy(max_attempts=6, initial_s=0.5, max_s=5.0, jitter_s=0.0)
    slept: list[float] = []
    calls = 0

    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    retrying = tenacity.Retrying(
        wait=policy.wait_strategy(),
        stop=policy.stop_strategy(),
        sleep=slept.append,
        reraise=True,
    )
    with pytest.raises(ConnectionError):
        retrying(always_fails)
    assert calls == 6
    assert slept == [policy.next_delay(attempt) for attempt in range(1, 6)]
    assert policy.next_delay(6) is None


@pytest.mark.parametrize(
    ("max_attempts", "initial_s", "max_s", "jitter_s"),
    [(0, 1.0, 10.0, 0.0), (3, -1.0, 10.0, 0.0), (3, 5.0, 1.0, 0.0), (3, 1.0, 10.0, -1.0)],
)
def test_nonsense_policies_are_refused(
    max_attempts: int, initial_s: float, max_s: float, jitter_s: float
) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts, initial_s, max_s, jitter_s)


class FlakyDatabase:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    async def write(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "written"


async def write_with_retries(database: FlakyDatabase, deadline_s: float | None = None) -> str:
    retrying = database_retrying(
        (ConnectionError, TimeoutError),
        structlog.get_logger(),
        initial_s=0.001,
        max_s=0.004,
        jitter_s=0.0,
        deadline_s=deadline_s,
    )
    async for attempt in retrying:
        with attempt:
            return await database.write()
    raise AssertionError("unreachable")


async def test_database_writes_are_retried_through_connection_errors_with_a_warning() -> None:
    database = FlakyDatabase([ConnectionError("down"), TimeoutError(), ConnectionResetError()])
    with capture_logs() as logs:
        assert await write_with_retries(database) == "written"
    assert database.calls == 4
    assert [log["event"] for log in logs] == ["database_retry"] * 3
    assert [log["attempt"] for log in logs] == [1, 2, 3]
    assert {log["log_level"] for log in logs} == {"warning"}
    assert logs[0]["error"] == "ConnectionError('down')"
    assert [log["wait_s"] for log in logs] == [0.001, 0.002, 0.004]


async def test_database_retries_never_give_up_by_default() -> None:
    database = FlakyDatabase([ConnectionError()] * 60)
    with capture_logs():
        assert await write_with_retries(database) == "written"
    assert database.calls == 61


async def test_other_errors_are_not_retried() -> None:
    database = FlakyDatabase([ValueError("bad data"), ConnectionError()])
    with pytest.raises(ValueError, match="bad data"):
        await write_with_retries(database)
    assert database.calls == 1


async def test_a_deadline_gives_up_with_the_original_error() -> None:
    database = FlakyDatabase([ConnectionError(str(n)) for n in range(10_000)])
    with capture_logs(), pytest.raises(ConnectionError):
        await write_with_retries(database, deadline_s=0.05)
    assert 2 <= database.calls < 10_000
