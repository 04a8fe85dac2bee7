"""The students' trainer and exporter, run for real on a few generated images at 32 px: train one epoch, resume
for another, export to ONNX with its parity check and precision study, and write a manifest (all in tmp_path)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import export, train
from models.data import lesion_split, load_pixels, load_samples, read_split
from shared.analysis.preprocess import to_tensor
from shared.labels import DIAGNOSIS_LABELS
from tests.conftest import REPO

SIZE = 32


def tiny_ham(root: Path, train_per_class: int = 4, val_per_class: int = 1) -> Path:
    """A HAM10000-style folder: every diagnosis on both sides of the lesion split, one image per lesion."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, candidate = [], 0
    for label_index, dx in enumerate(DIAGNOSIS_LABELS):
        wanted = {"train": train_per_class, "val": val_per_class}
        while any(wanted.values()):
            lesion, candidate = f"L{candidate}", candidate + 1
            side = lesion_split(lesion, 20, "skin-v1")
            if wanted[side]:
                wanted[side] -= 1
                rows.append({"lesion_id": lesion, "image_id": f"I{len(rows)}", "dx": dx})
                colour = np.array([40 + 30 * label_index, 200 - 25 * label_index, 120], np.float64)
                pixels = np.clip(colour + rng.normal(0, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / "images" / f"{rows[-1]['image_id']}.jpg")
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["lesion_id", "image_id", "dx"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny batches on a shared machine run ten times faster so."""
    threads = torch.get_num_threads()
    patch = pytest.MonkeyPatch()
    patch.setenv("TRAIN_THREADS", "1")
    torch.set_num_threads(1)
    yield
    patch.undo()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of the diagnosis student, then one more resumed at another learning rate (weights in tmp)."""
    root = tmp_path_factory.mktemp("students")
    data, weights, split = tiny_ham(root / "ham"), root / "weights", root / "split.csv"
    args = ["--data", str(data), "--model", "diagnosis", "--batch", "8", "--imgsz", str(SIZE), "--epochs", "1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "WEIGHTS_DIR", weights)
        patch.setattr(train, "CHECKPOINT_DIR", root / "checkpoints")
        train.main([*args, "--split-file", str(split)])
        first = json.loads((weights / "diagnosis-yolo11n-cls.history.json").read_text())
        train.main([*args, "--split-file", str(split), "--resume", "--lr", "5e-4"])
    return {"data": data, "weights": weights, "split": split, "first": first}


def test_one_epoch_writes_the_split_the_weights_and_the_history_and_resume_continues_it(trained):
    assert read_split(trained["split"]) == {s.image_id: s.split for s in load_samples(trained["data"])}
    assert [row["epoch"] for row in trained["first"]["history"]] == [1]
    path = trained["weights"] / "diagnosis-yolo11n-cls.pt"
    record = json.loads(path.with_suffix(".history.json").read_text())
    rows = record["history"]
    assert rows[0] == trained["first"]["history"][0]
    assert [(row["epoch"], row["lr0"], row["imgsz"]) for row in rows] == [(1, 2e-3, SIZE), (2, 5e-4, SIZE)]
    assert record["train_args"]["epochs"] == 2 and record["train_args"]["labels"] == list(DIAGNOSIS_LABELS)
    assert 0.0 <= rows[-1]["val_balanced_accuracy"] <= 1.0 and rows[-1]["loss"] > 0

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert (
        json.loads(json.dumps(checkpoint["train_args"])) == record["train_args"]
        and checkpoint["train_metrics"] == rows[-1]
    )
    assert next(checkpoint["model"].parameters()).dtype == torch.float16
    config = train.TrainConfig.of("diagnosis", trained["data"], imgsz=SIZE, resume=True, weights_dir=trained["weights"])
    resumed, earlier = train.starting_model(config)
    assert earlier == rows
    saved = checkpoint["model"].float().state_dict()
    assert all(torch.equal(tensor, saved[key]) for key, tensor in resumed.state_dict().items())


def test_a_run_cut_off_goes_on_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    data = tiny_ham(tmp_path / "ham")
    args = ["--data", str(data), "--model", "diagnosis", "--batch", "8", "--imgsz", str(SIZE), "--epochs", "2"]
    args += ["--split-file", str(tmp_path / "split.csv")]
    epoch, epochs_trained = train.Trainer.train_epoch, []

    def counted(self, kill_at: int | None = None):
        epochs_trained.append(1)
        if len(epochs_trained) == kill_at:
            raise KeyboardInterrupt
        return epoch(self)

    def use(run: str) -> Path:
        monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path / run)
        monkeypatch.setattr(train, "CHECKPOINT_DIR", tmp_path / f"{run}-checkpoints")
        return tmp_path / run / "diagnosis-yolo11n-cls.pt"

    def weights(path: Path) -> dict:
        return torch.load(path, map_location="cpu", weights_only=False)["model"].float().state_dict()

    straight_path = use("straight")
    train.main(args)
    straight = weights(straight_path)
    cut = use("cut")
    monkeypatch.setattr(train.Trainer, "train_epoch", lambda self: counted(self, kill_at=2))
    with pytest.raises(KeyboardInterrupt):  # killed during its second epoch
        train.main(args)
    assert not cut.exists()
    epochs_trained.clear()
    monkeypatch.setattr(train.Trainer, "train_epoch", counted)
    train.main(args)  # the same command again
    assert len(epochs_trained) == 1, "the second run trains the second epoch alone"
    assert all(torch.equal(tensor, weights(cut)[key]) for key, tensor in straight.items())
    history = json.loads(cut.with_suffix(".history.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2]

    epochs_trained.clear()
    cut.unlink()  # as if killed after the last checkpoint but before the weights were written
    train.main(args)  # a run that finished is not repeated: its weights are written from the checkpoint
    assert not epochs_trained
    assert all(torch.equal(tensor, weights(cut)[key]) for key, tensor in straight.items())


def test_a_finished_run_is_run_again_when_the_weights_it_started_from_have_changed(tmp_path, monkeypatch):
    """The binary student starts from the diagnosis student's weights: retraining the diagnosis student makes the
    binary student's finished run another run, not one to skip."""
    data = tiny_ham(tmp_path / "ham")
    monkeypatch.setattr(train, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(train, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    common = ["--data", str(data), "--batch", "8", "--imgsz", str(SIZE), "--epochs", "1"]
    common += ["--split-file", str(tmp_path / "split.csv")]
    epoch, epochs_trained = train.Trainer.train_epoch, []
    monkeypatch.setattr(
        train.Trainer, "train_epoch", lambda self: epochs_trained.append(self.config.name) or epoch(self)
    )
    train.main([*common, "--model", "diagnosis"])
    train.main([*common, "--model", "binary"])
    train.main([*common, "--model", "diagnosis"])  # finished: its weights are written again, with a new date
    train.main([*common, "--model", "binary"])  # finished, from the same weights: not run again
    assert epochs_trained == ["diagnosis", "binary"]
    train.main([*common, "--model", "diagnosis", "--lr", "5e-4"])  # another diagnosis model
    train.main([*common, "--model", "binary"])
    assert epochs_trained == ["diagnosis", "binary", "diagnosis", "binary"]


def test_the_config_takes_the_specs_values_unless_overridden(tmp_path):
    config = train.TrainConfig.of("binary", tmp_path)
    assert (config.arch, config.epochs, config.lr, config.imgsz) == ("yolo11n-cls.yaml", 10, 1e-3, 128)
    assert config.out == train.WEIGHTS_DIR / "binary-yolo11n-cls.pt"
    check = train.TrainConfig.of("check", tmp_path, epochs=2, lr=3e-4, imgsz=64, weights_dir=tmp_path)
    assert (check.arch, check.epochs, check.lr, check.imgsz) == ("resnet50", 2, 3e-4, 64)
    assert check.out == tmp_path / "check-resnet50.pth"


@pytest.mark.slow
def test_export_writes_a_checked_onnx_model_and_its_manifest_entry(trained, tmp_path):
    """``python -m models.export`` in its own process (as ``make export`` runs it: ONNX Runtime allows no
    per-session threads once another test has made the process's shared pool), on one CPU."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"schema": 1, "models": {"check": {"kept": True}}}))
    source = trained["weights"] / "diagnosis-yolo11n-cls.pt"
    command = [sys.executable, "-m", "models.export", "--data", str(trained["data"]), "--roles", "diagnosis"]
    command += ["--split-file", str(trained["split"]), "--out", str(out), "--diagnosis", str(source)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cpu = min(os.sched_getaffinity(0))
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu})
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parity" in done.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["check"] == {"kept": True}
    entry = manifest["models"]["diagnosis"]
    onnx_path = out / entry["file"]
    assert entry["file"] == "weights/diagnosis-yolo11n-cls.onnx"
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == entry["sha256"]
    assert (out / entry["torch_file"]).read_bytes() == source.read_bytes()
    assert entry["input"]["size"] == SIZE and entry["labels"] == list(DIAGNOSIS_LABELS)
    study = entry["precision_study"]
    assert set(study) == {"threads", "float32", "float16-weights", "int8-dynamic", "int8-static"}
    assert study["threads"] == 1 and study["float16-weights"]["max_abs_diff_vs_float32"] < 1e-2
    assert 0.3 <= entry["temperature"] <= 5.0 and entry["decision_prior_power"] == 0.0  # models.fit chooses it
    assert set(entry["logit_bias"].values()) == {0.0}
    assert entry["trained"]["epochs"] == 2


def test_the_parity_check_refuses_answers_that_are_not_the_torch_models(trained):
    student = export.load_student("diagnosis", trained["weights"] / "diagnosis-yolo11n-cls.pt")
    pixels = load_pixels(export.export_sets(trained["data"], trained["split"]).val, SIZE)
    with torch.no_grad():
        probs = export.Probabilities(student.model)(torch.from_numpy(to_tensor(pixels, student.mean, student.std)))
    probs = probs.numpy()
    assert export.check_parity(student, Path("unused.onnx"), pixels, probs) < 1e-6
    with pytest.raises(AssertionError, match="ONNX and torch differ"):
        export.check_parity(student, Path("unused.onnx"), pixels, np.roll(probs, 1, axis=1))
