"""The infer image installs its Python packages from a hash-locked file that matches functions/infer/requirements.txt,
from a base image pinned by digest; the workflow's actions are pinned by commit."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "functions/infer/requirements.lock"


def pins(text: str) -> dict[str, str]:
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", text, re.MULTILINE)
    }


def locked_entries() -> dict[str, list[str]]:
    """Each pinned package of the lock and its hashes."""
    entries: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        head = re.match(r"([A-Za-z0-9_.-]+==\S+)", block)
        if head:
            entries[head.group(1)] = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    return entries


def test_lock_pins_what_requirements_txt_pins():
    direct = pins((REPO / "functions/infer/requirements.txt").read_text())
    locked = pins(LOCK.read_text())
    assert direct and {name: locked.get(name) for name in direct} == direct, "run `make lock`"


def test_every_locked_package_has_hashes_and_nothing_points_off_pypi():
    entries = locked_entries()
    assert len(entries) >= len(pins((REPO / "functions/infer/requirements.txt").read_text()))
    assert all(hashes for hashes in entries.values()), [name for name, hashes in entries.items() if not hashes]
    text = LOCK.read_text()
    assert not re.search(r"^\s*(--index-url|--extra-index-url|--find-links|-f |-i )", text, re.MULTILINE)
    assert "file:" not in text and "git+" not in text


def test_dockerfile_installs_the_lock_with_hashes_from_a_pinned_base():
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.12[\w.-]*@sha256:[0-9a-f]{64}", base), base
    (install,) = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert "--require-hashes" in install and "-r requirements.lock" in install
    assert "requirements.txt" not in dockerfile


def test_workflow_actions_are_pinned_by_commit():
    uses = re.findall(r"uses:\s*(\S+)", (REPO / ".github/workflows/ci-cd.yml").read_text())
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses
