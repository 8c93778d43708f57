"""[limits] per_contact and per_contact_categories: read from the file (TOML arrays) or the
environment (comma-separated); a bad rule or category is one line and exit code 78."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from daemon.cli.main import main
from daemon.config import load_config
from daemon.errors import EXIT_CONFIG


def test_caps_load_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[limits]\nper_contact = ["1/24h", "3/7d"]\n')
    limits = load_config(path, environ={}).limits
    assert limits.per_contact == ("1/24h", "3/7d")
    assert limits.per_contact_categories == ("marketing",)
    env = {
        "WA_SENDER_LIMITS_PER_CONTACT": "2/1h, 5/1d",
        "WA_SENDER_LIMITS_PER_CONTACT_CATEGORIES": "marketing,utility",
    }
    limits = load_config(path, environ=env).limits
    assert limits.per_contact == ("2/1h", "5/1d")
    assert limits.per_contact_categories == ("marketing", "utility")
    assert load_config(None, environ={}).limits.per_contact == ()  # no cap by default


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        (
            'per_contact = ["1/24x"]',
            "limits.per_contact has a bad value: '1/24x' is not N/DURATION",
        ),
        ('per_contact = ["0/24h"]', "the count must be from 1 to 1000"),
        ('per_contact = ["1/100d"]', "the duration must be from 1m to 90d"),
        ('per_contact = ["1/24h", "three/7d"]', "'three/7d' is not N/DURATION"),
        ("per_contact = [1]", "limits.per_contact must be a list of strings, got [1]"),
        ("per_contact = 24", "limits.per_contact must be a list of strings, got 24"),
        ('per_contact_categories = ["promo"]', "'promo' is not a template category"),
        ("per_contact_categories = []", "must name at least one template category"),
    ],
)
def test_a_bad_cap_is_one_line_and_exit_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, fragment: str
) -> None:
    for var in [v for v in os.environ if v.startswith("WA_SENDER_")]:
        monkeypatch.delenv(var)
    path = tmp_path / "config.toml"
    path.write_text(f"[limits]\n{toml}\n")
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["config", "check", str(path)])
    lines = err.getvalue().strip().splitlines()
    assert code == EXIT_CONFIG == 78
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"wa-sender: error: {path}: limits.per_contact"), lines
    assert fragment in lines[0], lines
    assert out.getvalue() == ""


def test_a_bad_cap_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setenv("WA_SENDER_LIMITS_PER_CONTACT", "1/24h,1 per day")
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["config", "check"])
    assert code == 78
    line = err.getvalue().strip()
    assert "\n" not in line
    assert "environment WA_SENDER_LIMITS_PER_CONTACT: limits.per_contact has a bad value" in line
