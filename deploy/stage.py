"""Build the deployable folder of each function: what Cloud Functions / Cloud Build receive, nothing more.

    python deploy/stage.py [--out build/stage] [upload|status|infer ...]

``<out>/<function>/`` holds the function's ``main.py`` and ``requirements.txt`` and a copy of ``shared/`` (no
``__pycache__``). infer's folder is also its Docker build context: ``deploy/Dockerfile``, ``requirements.lock`` (what
the image installs, hash-locked) and ``models/`` with ``manifest.json`` and the ONNX files it names (no ``.pt``: the
image serves ONNX Runtime only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ("upload", "status", "sweep", "infer")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def model_files(models_dir: Path) -> list[Path]:
    """manifest.json and the ONNX file of each model it lists, relative to ``models_dir``."""
    manifest = models_dir / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} is missing: run `make export` (or `make train` first) before staging infer.")
    files = [Path("manifest.json")]
    for role, spec in json.loads(manifest.read_text())["models"].items():
        path = Path(spec["file"])
        if path.is_absolute() or ".." in path.parts or path.suffix != ".onnx":
            raise SystemExit(f"{manifest}: the {role} model file {path} must be an .onnx file inside {models_dir}.")
        if not (models_dir / path).is_file():
            raise SystemExit(f"{models_dir / path} is missing: run `make export`.")
        files.append(path)
    return files


def stage(function: str, out: Path, models_dir: Path = REPO / "models") -> Path:
    """(Re)create ``out/function`` and return it."""
    dest = out / function
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("main.py", "requirements.txt"):
        shutil.copy2(REPO / "functions" / function / name, dest / name)
    shutil.copytree(REPO / "shared", dest / "shared", ignore=IGNORE)
    # gcloud would otherwise build an ignore list from a .gitignore; everything staged here is meant to go
    (dest / ".gcloudignore").write_text(".gcloudignore\n")
    if function == "infer":
        shutil.copy2(REPO / "deploy" / "Dockerfile", dest / "Dockerfile")
        shutil.copy2(REPO / "functions" / "infer" / "requirements.lock", dest / "requirements.lock")
        for path in model_files(models_dir):
            (dest / "models" / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(models_dir / path, dest / "models" / path)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/stage.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "stage", help="default: build/stage")
    parser.add_argument("--models", type=Path, default=REPO / "models", help="default: models/")
    parser.add_argument("functions", nargs="*", metavar="FUNCTION", help="upload, status, sweep, infer (default: all)")
    args = parser.parse_args(argv)
    if set(args.functions) - set(FUNCTIONS):  # not argparse's choices: Python 3.11 rejects an empty list with them
        parser.error(f"unknown function in {args.functions}; choose from {', '.join(FUNCTIONS)}")
    for function in args.functions or FUNCTIONS:
        print(f"staged {stage(function, args.out, args.models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
