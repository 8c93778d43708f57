"""The load test with frequency caps (issue 19 item 8): `--caps` gives the daemons
[limits] per_contact, `--compare no-caps` / `no-planning` run the same load without the caps
(and without the window too), so their cost on the claim shows as a ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.loadtest.harness import daemon_env
from daemon.loadtest.options import LoadtestError, LoadtestOptions
from tests.test_loadtest import _run, on_test_server  # noqa: F401 (fixture)


def test_caps_options_are_checked_and_reach_the_daemons() -> None:
    with pytest.raises(LoadtestError, match="--caps: '1/24x' is not N/DURATION"):
        LoadtestOptions(caps="1/24x")
    with pytest.raises(LoadtestError, match="no-caps needs --caps"):
        LoadtestOptions(systems=("wa-sender", "no-caps"))
    with pytest.raises(LoadtestError, match="no-planning needs --window or --caps"):
        LoadtestOptions(systems=("wa-sender", "no-planning"))
    options = LoadtestOptions(caps="1/24h,3/7d", systems=("wa-sender", "no-caps"))
    assert options.describe()["caps"] == "1/24h,3/7d"
    assert daemon_env(options, "http://x")["WA_SENDER_LIMITS_PER_CONTACT"] == "1/24h,3/7d"
    assert "WA_SENDER_LIMITS_PER_CONTACT" not in daemon_env(LoadtestOptions(), "http://x")


def test_loadtest_with_a_window_and_a_cap_sends_everything_and_compares_without(
    on_test_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    code, report = _run(
        [
            "--contacts",
            "1500",
            "--window",
            "Daily 00:00-24:00",
            "--caps",
            "1/24h",
            "--compare",
            "no-planning",
        ],
        tmp_path,
    )
    assert code == 0, report
    assert report["scenario"]["caps"] == "1/24h"
    for system in ("wa-sender", "no-planning"):
        run = report["runs"][system]
        assert run["states"] == {"sent": 1500}  # every generated phone once: none capped
        assert run["invariants"]["duplicated_contacts"] == 0
    assert report["ratios"]["no-planning"]["sends_per_s"] > 0
