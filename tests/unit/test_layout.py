"""The layers stay apart: serving code (shared/, functions/) imports nothing from training, the dev kit or the
tests; tests import nothing from scripts/ (entry points, not a library)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def offenders(folders: tuple[str, ...], forbidden: set[str]) -> dict[str, set[str]]:
    found = {}
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            if bad := top_level_imports(path) & forbidden:
                found[str(path.relative_to(REPO))] = bad
    return found


def test_serving_code_imports_no_training_dev_kit_or_tests():
    assert offenders(("shared", "functions"), {"models", "devstack", "scripts", "tests"}) == {}


def test_tests_import_nothing_from_scripts():
    assert offenders(("tests",), {"scripts"}) == {}
