"""Every numeric configuration key has a range, checked at load: at its bounds it loads; NaN,
infinity, a negative or too large value is one line naming the key and the range, exit code 78
(EX_CONFIG), so systemd does not restart a daemon that cannot start."""

from __future__ import annotations

import io
import os
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from daemon.cli.main import main
from daemon.config import (
    BOUNDS,
    Bound,
    Config,
    describe_bound,
    env_name,
    key_value,
    load_config,
    numeric_keys,
)
from daemon.errors import EXIT_CONFIG, ConfigError
from tests.helpers.proc import REPO
from tests.test_cli import wa


def limit_value(limit: float | str) -> float:
    """A bound's value in the default config (a key's name: that key's default)."""
    return float(key_value(Config(), limit)) if isinstance(limit, str) else float(limit)


def shown(kind: type, value: float) -> str:
    """`value` as an environment variable would carry it for a key of type `kind`."""
    if kind is int:
        return str(int(value))
    return repr(float(value))


def inside_values(name: str, bound: Bound) -> list[float]:
    """The bounds themselves (the low one nudged in when it is excluded)."""
    low, high = limit_value(bound.low), limit_value(bound.high)
    if bound.above:
        low = low + 1 if numeric_keys()[name] is int else low + 0.001
    return [low, high]


def outside_values(name: str, bound: Bound) -> list[str]:
    """NaN, infinities, negative, below the low bound, above the high one (as env text)."""
    kind = numeric_keys()[name]
    low, high = limit_value(bound.low), limit_value(bound.high)
    values = [shown(kind, high * 10 + 10), shown(kind, -5)]
    below = low if bound.above else low - (1 if kind is int else max(0.0005, low / 10))
    if below >= 0 or kind is float:
        values.append(shown(kind, below))
    if kind is float:
        values += ["nan", "inf", "-inf", "1e309"]
    return values


CASES_INSIDE = [(name, v) for name, b in BOUNDS.items() for v in inside_values(name, b)]
CASES_OUTSIDE = [(name, v) for name, b in BOUNDS.items() for v in outside_values(name, b)]


def test_every_numeric_key_of_every_section_has_a_range() -> None:
    assert set(numeric_keys()) == set(BOUNDS)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_defaults_are_inside_their_range(name: str) -> None:
    bound = BOUNDS[name]
    value = key_value(Config(), name)
    assert limit_value(bound.low) <= value <= limit_value(bound.high)


def _env(name: str, value: str) -> dict[str, str]:
    section, _, key = name.partition(".")
    env = {env_name(section, key): value}
    # Keys whose range names this one stay inside it: pool_min at 0 while pool_max is 1.
    for other, bound in BOUNDS.items():
        if name in (bound.low, bound.high) and other != name:
            o_section, _, o_key = other.partition(".")
            ends = inside_values(other, bound)
            end = ends[0] if bound.high == name else ends[1]
            if isinstance(bound.low, str) and bound.high == name:
                continue  # its low end is the key itself: leave it at its default
            env[env_name(o_section, o_key)] = shown(numeric_keys()[other], end)
    return env


@pytest.mark.parametrize(("name", "value"), CASES_INSIDE)
def test_a_value_at_its_bounds_loads(name: str, value: float) -> None:
    kind = numeric_keys()[name]
    config = load_config(None, environ=_env(name, shown(kind, value)))
    loaded = key_value(config, name)
    assert loaded == pytest.approx(value)


@pytest.mark.parametrize(("name", "value"), CASES_OUTSIDE)
def test_a_value_beyond_its_bounds_is_one_line_naming_the_key_and_range(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, environ=_env(name, value))
    message = str(raised.value)
    assert "\n" not in message
    section, _, key = name.partition(".")
    assert message.startswith(f"environment {env_name(section, key)}: {name} must be ")
    assert describe_bound(BOUNDS[name], Config()) in message


@pytest.mark.parametrize(("name", "value"), CASES_OUTSIDE)
def test_the_command_line_exits_78_with_one_line(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("WA_SENDER_")]:
        monkeypatch.delenv(var)
    for var, text in _env(name, value).items():
        monkeypatch.setenv(var, text)
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["--config", str(REPO / "config.toml"), "config", "check"])
    lines = err.getvalue().strip().splitlines()
    assert code == EXIT_CONFIG == 78
    assert len(lines) == 1 and lines[0].startswith("wa-sender: error: environment "), lines
    assert name in lines[0] and "must be" in lines[0]
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[sender]\nrate_per_second = nan\n", "sender.rate_per_second must be a finite number"),
        ("[sender]\nrate_per_second = inf\n", "above 0, up to sender.max_rate_per_second (1000)"),
        ("[sender]\nrate_per_second = 1e9\n", "got 1000000000.0"),
        ("[webhook]\nport = 70000\n", "webhook.port must be a whole number from 1 to 65535"),
        ("[webhook]\nport = -5\n", "got -5"),
        ("[metrics]\nport = 0\n", "metrics.port must be a whole number from 1 to 65535"),
        ("[database]\npool_min = 20\n", "from 0 to database.pool_max (10)"),
        ("[sender]\nretry_max_s = 0.5\n", "from sender.retry_initial_s (1) to 604800"),
    ],
)
def test_the_file_is_checked_the_same_way(tmp_path: Path, toml: str, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: ")


def test_a_rate_up_to_a_raised_maximum_is_accepted() -> None:
    env = {
        "WA_SENDER_SENDER_MAX_RATE_PER_SECOND": "50000",
        "WA_SENDER_SENDER_RATE_PER_SECOND": "20000",
    }
    assert load_config(None, environ=env).sender.rate_per_second == 20000


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"WA_SENDER_WHATSAPP_PHONE_NUMBER_ID": "abc"}, "digits only"),
        ({"WA_SENDER_WHATSAPP_BASE_URL": "graph.facebook.com"}, "must start with https://"),
        ({"WA_SENDER_METRICS_PORT": "8080"}, "metrics.port must differ from webhook.port"),
        ({"WA_SENDER_METRICS_HOST": " "}, "metrics.host must not be empty"),
    ],
)
def test_other_values_are_checked_too(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, environ=env)


def test_the_shipped_config_is_valid_and_documents_every_range() -> None:
    load_config(REPO / "config.toml", environ={})
    readme = (REPO / "README.md").read_text()
    for name, bound in BOUNDS.items():
        row = re.search(rf"^\| `{re.escape(name)}` \| ([^|]+) \|", readme, re.MULTILINE)
        assert row, f"README.md has no range row for {name}"
        assert row.group(1).strip() == describe_bound(bound), name


def test_config_check_validates_a_file_and_the_environment_without_starting_anything(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[sender]\nrate_per_second = 200.0\n")
    result = wa(None, "config", "check", str(good), env={"WA_SENDER_WEBHOOK_PORT": "9443"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"config ok: {good}, 1 environment override(s)"
    # What `run` would still refuse is said, not an error: the CLI needs no token.
    assert "warning: `wa-sender run` would refuse to start: whatsapp.access_token" in result.stderr
    shown = wa(
        None, "config", "check", str(good), "--show", env={"DATABASE_URL": "postgresql://u:pw@h/d"}
    )
    assert "sender.rate_per_second = 200.0" in shown.stdout and "from 1 to 65535" in shown.stdout
    assert "pw" not in shown.stdout and "database.url = 'set'" in shown.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[webhook]\nport = 70000\n")
    result = wa(None, "config", "check", str(bad))
    assert result.returncode == 78
    assert result.stderr.strip() == (
        f"wa-sender: error: {bad}: webhook.port must be a whole number from 1 to 65535, got 70000"
    )
