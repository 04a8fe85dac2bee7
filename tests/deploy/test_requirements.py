"""Each function's requirements.txt holds what that function imports, and no more.

A fresh interpreter imports the function's ``main.py`` and builds the adapters its use cases use; every module of
``shared`` that got loaded is then read for its imports (lazy ones included). Each distribution those imports come
from must be listed, or installed by one that is; each listed distribution must be imported.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

MANIFEST = REPO / "models" / "manifest.json"
# the ports each function's use cases use (shared.bootstrap builds an adapter only when it is first used)
USES = {
    "upload": ("jobs", "photos", "quotas", "queue"),
    "status": ("jobs", "photos"),
    "infer": ("jobs", "photos"),
    "sweep": ("jobs",),
}
# MODEL_RUNTIME=torch, a development option the container does not serve, imports these lazily
DEV_ONLY = {"infer": {"torch", "torchvision", "ultralytics", "onnx"}}
LOADED = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)
for name in sys.argv[2:]:
    getattr(main.deps, name)
files = [m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] == "shared" and getattr(m, "__file__", None)]
print(json.dumps(files + [sys.argv[1]]))
"""
ENV = {
    "GOOGLE_CLOUD_PROJECT": "demo-skin",
    "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9",
    "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
    "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",
}


@cache
def owners() -> dict[Path, str]:
    """Every installed file, by the distribution that installed it."""
    index = {}
    for dist in metadata.distributions():
        root = Path(dist.locate_file("")).resolve()
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            index[Path(os.path.normpath(root / file))] = name
    return index


def distribution_of(module: str) -> str | None:
    """The distribution a module comes from (found on sys.path, not imported); None for the standard library and
    the repository's own code."""
    parts = module.split(".")
    while parts:
        for entry in map(Path, sys.path):
            base = entry.joinpath(*parts)
            for candidate in (
                base / "__init__.py",
                base.with_name(base.name + ".py"),
                *base.parent.glob(base.name + ".*.so"),
            ):
                if candidate.is_file():
                    return owners().get(candidate.resolve())
        parts.pop()  # a name inside a module, or a namespace package: try its parent
    return None


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # a submodule, or a name in one
    return names


def closure(names: set[str]) -> set[str]:
    """The distributions ``names`` install, themselves included."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


@pytest.mark.parametrize("function", list(USES))
def test_requirements_hold_what_the_function_imports(function):
    if function == "infer" and not MANIFEST.exists():
        pytest.skip(f"{MANIFEST} does not exist yet: infer loads its models when it is imported")
    main = REPO / "functions" / function / "main.py"
    done = subprocess.run(
        [sys.executable, "-c", LOADED, str(main), *USES[function]],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **ENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = {name for file in json.loads(done.stdout.splitlines()[-1]) for name in imported_modules(Path(file))}
    imported = {dist for dist in map(distribution_of, modules) if dist}
    listed = {
        canonicalize_name(Requirement(line).name)
        for line in (main.parent / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert listed - imported == set(), f"{function} lists distributions it never imports"
    assert imported - closure(listed) - DEV_ONLY.get(function, set()) == set(), (
        f"{function} imports distributions its requirements do not install"
    )
