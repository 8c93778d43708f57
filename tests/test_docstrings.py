"""A docstring on every public function, class and method of the operator-facing modules:
daemon/ops/, daemon/cli/, daemon/config/, daemon/logs.py, daemon/errors.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.proc import REPO

DAEMON = REPO / "daemon"
MODULES = sorted(
    [
        *(DAEMON / "ops").glob("*.py"),
        *(DAEMON / "cli").glob("*.py"),
        *(DAEMON / "config").glob("*.py"),
        DAEMON / "logs.py",
        DAEMON / "errors.py",
    ]
)


def undocumented(path: Path) -> list[str]:
    """Public functions, classes and methods of public classes without a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing: list[str] = []
    if ast.get_docstring(tree) is None:
        missing.append("(module)")

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                missing.append(prefix + node.name)
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return missing


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_public_name_has_a_docstring(path: Path) -> None:
    assert undocumented(path) == []


def test_the_scan_finds_a_missing_docstring(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        '"""m."""\nclass A:\n    def f(self): ...\n    def _g(self): ...\ndef h(): ...\n'
    )
    assert undocumented(source) == ["A", "A.f", "h"]
