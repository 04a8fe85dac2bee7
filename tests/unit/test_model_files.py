"""The committed models: a complete manifest (four models, gate, assessment), matching checksums, the size budget,
classifiers only."""

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


def test_manifest_describes_all_four_models_the_gate_and_the_assessment():
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
    for role in ("diagnosis", "check", "reference"):
        assert MANIFEST["models"][role]["labels"] == DIAGNOSES
    assert MANIFEST["models"]["check"]["architecture"] == "resnet50"
    assert MANIFEST["models"]["reference"]["input"]["colour_constancy"] == "shades_of_grey"
    assert 0 < MANIFEST["gate"]["threshold"] < 1
    assessment = MANIFEST["assessment"]
    assert set(assessment["weights"]) <= set(ROLES) and all(w >= 0 for w in assessment["weights"].values())
    assert list(assessment["bias"]) == DIAGNOSES and set(assessment["agreement"]) <= set(ROLES)
    assert 0 < assessment["conf_threshold"] < 1
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
    (inp,), outputs = session.get_inputs(), session.get_outputs()
    size = entry["input"]["size"]
    assert inp.name == "images" and inp.shape[1:] == [3, size, size]
    assert outputs[0].shape[1] == len(entry["labels"])
    if role == "reference":  # one graph: the diagnosis logits and the not-a-lesion gate's logit
        assert [out.name for out in outputs] == ["logits", "gate"] and outputs[1].shape[1] == 1
    else:
        assert len(outputs) == 1


def test_resnet50_state_dict_rebuilds_from_its_onnx_file():
    entry = MANIFEST["models"]["check"]
    state = state_dict_from_onnx(MODELS / entry["file"])
    model = torchvision.models.resnet50(weights=None, num_classes=len(entry["labels"]))
    model.load_state_dict(state)  # strict: every state-dict name and shape is in the ONNX file
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in state.values())


@pytest.mark.parametrize("role", ["binary", "diagnosis"])
def test_yolo_state_dict_rebuilds_from_its_onnx_file(role):
    from ultralytics.nn.tasks import ClassificationModel

    entry = MANIFEST["models"][role]
    model = ClassificationModel(cfg=f"{entry['architecture']}.yaml", nc=len(entry["labels"]), verbose=False)
    model.load_state_dict(state_dict_from_onnx(MODELS / entry["file"]))  # strict


def test_everything_tracked_under_models_stays_under_60_mib():
    listed = subprocess.run(["git", "ls-files", "models"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not listed:
        pytest.skip("not a git checkout")
    total = sum((REPO / path).stat().st_size for path in listed if (REPO / path).exists())
    assert total < 60 * 2**20, f"{total / 2**20:.1f} MiB"
    assert not any(path.endswith((".pth", ".pt")) for path in listed)


def test_the_configured_thresholds_are_the_ones_fitted_in_the_manifest():
    from shared import config

    defaults = config.load({})
    assert MANIFEST["assessment"]["conf_threshold"] == defaults.CONF_THRESHOLD
    assert MANIFEST["gate"]["threshold"] == defaults.GATE_THRESHOLD
