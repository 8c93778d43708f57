"""`wa-sender loadtest --template rich --compare template-body`: the richest template and the
body-only one, measured in the same run; the mock validates every rich body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.cli.main import main
from daemon.loadtest.options import LoadtestError, LoadtestOptions
from daemon.loadtest.seeding import loadtest_spec, template_values


@pytest.fixture
def on_test_server(pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", pg_server_dsn)
    return pg_server_dsn


def test_the_rich_template_has_every_value_per_contact() -> None:
    assert loadtest_spec("body") is None
    realistic = loadtest_spec("rich")
    assert realistic is not None and set(realistic.constants) == {
        "header.image.link",
        "body.worth.code",
        "button.1.payload",
    }
    spec = loadtest_spec("rich-all")
    assert spec is not None and not spec.constants
    keys, values, indexed = template_values(spec)
    assert values[keys.index("body.worth.amount_1000")] == "12500"
    assert set(keys) >= {
        "header.image.link",
        "body.first_name",
        "body.worth.amount_1000",
        "button.0.url_suffix",
        "button.1.payload",
        "button.2.coupon_code",
    }
    assert dict(zip(keys, indexed, strict=True))["body.first_name"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "rich", "systems": ("wa-sender", "floor")}, "compare --template rich"),
        ({"template": "nope.json"}, "not body, rich, rich-all or a JSON file"),
    ],
)
def test_template_options_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LoadtestError, match=message):
        LoadtestOptions(**kwargs)


def test_rich_and_body_templates_in_one_run(on_test_server: str, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    code = main(
        [
            "loadtest",
            "--quiet",
            "--json",
            str(report_path),
            "--log-dir",
            str(tmp_path / "logs"),
            "--contacts",
            "1500",
            "--template",
            "rich",
            "--compare",
            "template-body",
        ]
    )
    report = json.loads(report_path.read_text())
    assert code == 0 and report["ok"] is True
    assert report["scenario"]["template"] == "rich"
    rich, body = report["runs"]["wa-sender"], report["runs"]["template-body"]
    assert (rich["notes"]["template"], body["notes"]["template"]) == ("rich", "body")
    for run in (rich, body):
        assert run["throughput"]["accepted"] == 1500 and run["states"] == {"sent": 1500}
        assert run["mock"]["errors_by_code"] == {}  # every body fit its template
    assert report["ratios"]["template-body"]["sends_per_s"] > 0
