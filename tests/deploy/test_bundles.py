"""The staged deploy bundles (deploy/stage.py) work on their own: each in a fresh virtualenv made from its own
requirements.txt, served by functions-framework from the staged folder, with no PYTHONPATH into the repository.

The virtualenvs are cached under build/test-venvs/<sha256 of python + requirements>; upload and status share one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from devstack.sample import synthetic_lesion

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / "build" / "test-venvs"
MANIFEST = REPO / "models" / "manifest.json"
NO_MODELS = f"{MANIFEST} does not exist yet: the models are being exported (`make export`); infer cannot be staged"
pytestmark = pytest.mark.slow


def bundle_python() -> str:
    """The deployed runtime is Python 3.12: BUNDLE_PYTHON, else python3.12 when it runs, else this Python."""
    for candidate in (os.environ.get("BUNDLE_PYTHON"), "python3.12"):
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def venv_for(requirements: Path, *, locked: bool = False) -> Path:
    """A fresh virtualenv with ``requirements``; ``locked``: as the infer image installs its hash-locked file,
    from PyPI alone (no local pip configuration, wheels only, every hash checked)."""
    python = bundle_python()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    venv = VENVS / hashlib.sha256(version.encode() + requirements.read_bytes()).hexdigest()[:16]
    if not (venv / ".complete").exists():
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        options = ["--require-hashes", "--only-binary=:all:"] if locked else []
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""} if locked else None
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", *options, "-r", str(requirements)],
            check=True,
            env=env,
        )
        (venv / ".complete").touch()
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no emulator or repository settings: only what a deployed function would have."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "GOOGLE_CLOUD_PROJECT": "demo-skin",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(venv: Path, folder: Path, target: str, log: Path, **env: str):
    """functions-framework serving folder/main.py on a free loopback port; yields its URL."""
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                str(venv / "bin/functions-framework"),
                "--target",
                target,
                "--source",
                "main.py",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=folder,
            env=clean_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert server.poll() is None, f"{target} exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{target} did not listen in 120 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gunicorn workers included), SIGKILL after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage")
    functions = ["upload", "status", "sweep"] + (["infer"] if MANIFEST.exists() else [])
    subprocess.run([sys.executable, "deploy/stage.py", "--out", str(out), *functions], cwd=REPO, check=True)
    return out


@pytest.fixture(scope="module")
def infer_venv(staged) -> Path:
    if not MANIFEST.exists():
        pytest.skip(NO_MODELS)
    return venv_for(staged / "infer/requirements.lock", locked=True)  # what deploy/Dockerfile runs


def test_staged_folders_hold_only_what_deploys(staged):
    for folder in staged.iterdir():
        names = {path.relative_to(folder).as_posix() for path in folder.rglob("*")}
        assert {"main.py", "requirements.txt", "shared/__init__.py", "shared/adapters/__init__.py"} <= names
        assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
        assert (folder / "requirements.txt").read_bytes() == (
            REPO / "functions" / folder.name / "requirements.txt"
        ).read_bytes()


@pytest.mark.parametrize("function", ["upload", "status"])
def test_public_function_serves_from_its_bundle(staged, tmp_path, function):
    venv = venv_for(staged / function / "requirements.txt")
    with serve(
        venv, staged / function, function, tmp_path / "server.log", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099"
    ) as url:
        reply = (requests.post if function == "upload" else requests.get)(url, timeout=30)
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]["code"] == "unauthenticated"


def test_sweep_serves_from_its_bundle(staged, tmp_path):
    venv = venv_for(staged / "sweep" / "requirements.txt")
    with serve(venv, staged / "sweep", "sweep", tmp_path / "server.log") as url:
        reply = requests.get(url, timeout=30)  # only POST runs it (Cloud Scheduler's call)
    assert reply.status_code == 405 and reply.json()["error"]["code"] == "method_not_allowed"


def test_infer_bundle_has_onnx_models_only(staged):
    if not MANIFEST.exists():
        pytest.skip(NO_MODELS)
    models = staged / "infer/models"
    files = {path.relative_to(models).as_posix() for path in models.rglob("*") if path.is_file()}
    named = {entry["file"] for entry in json.loads(MANIFEST.read_text())["models"].values()}
    assert files == named | {"manifest.json"} and all(name.endswith(".onnx") for name in named)
    assert (staged / "infer/Dockerfile").read_bytes() == (REPO / "deploy/Dockerfile").read_bytes()


def test_infer_venv_has_no_torch_and_fits(infer_venv):
    assert (
        subprocess.run(
            [str(infer_venv / "bin/python"), "-c", "import torch"], capture_output=True, env=clean_env()
        ).returncode
        != 0
    )
    size_mb = int(
        subprocess.run(["du", "-sm", str(infer_venv)], capture_output=True, text=True, check=True).stdout.split()[0]
    )
    (REPO / "build/infer-venv-size.txt").write_text(f"{size_mb}\n")
    print(f"infer virtualenv: {size_mb} MB (goal <= 600 MB)")
    assert size_mb <= 600


def test_infer_loads_the_models_and_refuses_requests_not_from_the_queue(staged, infer_venv, tmp_path):
    folder = staged / "infer"
    with serve(infer_venv, folder, "infer", tmp_path / "server.log", MODELS_DIR=str(folder / "models")) as url:
        reply = requests.post(url, json={"jobId": "0123456789abcdef01234567"}, timeout=30)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "forbidden"


def test_infer_bundle_analyses_a_photo(staged, infer_venv, tmp_path):
    """A sharp lesion gets a result from every model and a blurred one is refused: a bundle that rejects (or
    accepts) every photo fails here."""
    sharp, blurred = tmp_path / "lesion.jpg", tmp_path / "blurred.jpg"
    synthetic_lesion(seed=1).save(sharp, quality=92)
    synthetic_lesion(seed=1, blur=6).save(blurred, quality=92)
    folder = staged / "infer"
    done = subprocess.run(
        [str(infer_venv / "bin/python"), "-m", "shared.cli", "analyze", str(sharp), str(blurred)],
        cwd=folder,
        env=clean_env(MODELS_DIR=str(folder / "models")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lesion, refused = (json.loads(line) for line in done.stdout.splitlines())
    assert lesion["status"] == "done", lesion
    result = lesion["result"]
    assert {"binary", "diagnosis", "check"} <= result.keys() and result["quality"]["ok"] is True
    assert sum(result["binary"]["scores"].values()) == pytest.approx(1, abs=1e-4)
    assert refused["status"] == "rejected" and refused["rejection"]["code"] == "too_blurry", refused
