"""The committed models: a complete manifest, matching checksums, the size budget, classifiers only."""

import hashlib
import json
import subprocess

import pytest
import torch
import torchvision

from shared.analysis.classifiers import ROLES, OnnxClassifier, load_manifest
from shared.analysis.onnx_state_dict import state_dict_from_onnx
from shared.analysis.threads import usable_cpus
from tests.conftest import REPO

MODELS = REPO / "models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())
DIAGNOSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def test_manifest_describes_all_three_models():
    assert set(MANIFEST["models"]) == set(ROLES)
    for role, entry in MANIFEST["models"].items():
        for key in (
            "name",
            "version",
            "architecture",
            "file",
            "sha256",
            "labels",
            "input",
            "runtime",
            "precision",
            "temperature",
        ):
            assert entry[key], (role, key)
        assert {"size", "mean", "std", "resize", "color", "layout"} <= set(entry["input"])
        assert entry["temperature"] > 0
    assert MANIFEST["models"]["binary"]["labels"] == ["benign", "malignant"]
    assert MANIFEST["models"]["diagnosis"]["labels"] == MANIFEST["models"]["check"]["labels"] == DIAGNOSES
    assert MANIFEST["models"]["check"]["architecture"] == "resnet50"
    assert load_manifest(MODELS).keys() == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_checksums_match_the_files(role):
    entry = MANIFEST["models"][role]
    assert hashlib.sha256((MODELS / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    if entry.get("torch_file"):
        assert hashlib.sha256((MODELS / entry["torch_file"]).read_bytes()).hexdigest() == entry["torch_sha256"]


@pytest.mark.parametrize("role", ROLES)
def test_onnx_files_are_classifiers_over_their_labels(role):
    entry = MANIFEST["models"][role]
    session = OnnxClassifier(load_manifest(MODELS)[role], threads=usable_cpus()).session
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    size = entry["input"]["size"]
    assert inp.name == "images" and inp.shape[1:] == [3, size, size]
    assert out.shape[1] == len(entry["labels"])


def test_resnet50_state_dict_rebuilds_from_its_onnx_file():
    entry = MANIFEST["models"]["check"]
    state = state_dict_from_onnx(MODELS / entry["file"])
    model = torchvision.models.resnet50(weights=None, num_classes=len(entry["labels"]))
    model.load_state_dict(state)  # strict: every state-dict name and shape is in the ONNX file
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in state.values())


def test_everything_tracked_under_models_stays_under_60_mib():
    listed = subprocess.run(["git", "ls-files", "models"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not listed:
        pytest.skip("not a git checkout")
    total = sum((REPO / path).stat().st_size for path in listed if (REPO / path).exists())
    assert total < 60 * 2**20, f"{total / 2**20:.1f} MiB"
    assert not any(path.endswith(".pth") for path in listed)
