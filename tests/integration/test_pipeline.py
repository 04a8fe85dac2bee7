"""The pipeline with the real committed models, offline: formats, rejections, schema, determinism, runtimes."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from devstack.sample import synthetic_lesion
from shared import config
from shared.analysis.imaging import decode
from shared.analysis.pipeline import Pipeline
from shared.errors import ServiceError
from tests.conftest import REPO, contract_result_fields, encoded, jpeg_bytes

RESULT_FIELDS = contract_result_fields()
ROLES = ("binary", "diagnosis", "check", "reference")
LESION = synthetic_lesion(seed=1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The pipeline must never reach the network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(config.load({}))


@pytest.fixture(scope="module")
def ungated_pipeline() -> Pipeline:
    """The pipeline with the not-a-lesion gate off (GATE_THRESHOLD=0), for tests of decoding: they should not
    hang on the gate's margin for a drawing (a grey re-encoding of the synthetic lesion is kept by less than 1)."""
    return Pipeline(config.load({"GATE_THRESHOLD": "0"}))


@pytest.fixture(scope="module")
def torch_pipeline() -> Pipeline:
    return Pipeline(config.load({"MODEL_RUNTIME": "torch"}))


def test_result_has_exactly_the_fields_of_the_contract(pipeline):
    analysis = pipeline.analyze(jpeg_bytes(LESION), "image/jpeg")
    assert analysis.status == "done" and set(analysis.result) == RESULT_FIELDS
    result = analysis.result
    assert set(result["binary"]["scores"]) == {"benign", "malignant"}
    for role in ("diagnosis", "check", "reference", "assessment"):
        assert set(result[role]["scores"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    for role in (*ROLES, "assessment"):
        assert abs(sum(result[role]["scores"].values()) - 1) < 1e-6
    for role in ROLES:
        assert set(result["models"][role]) == {"name", "version", "sha256"}
    assessment = result["assessment"]
    assert set(assessment) == {"label", "confidence", "scores", "malignant", "models"}
    assert assessment["malignant"] == pytest.approx(sum(assessment["scores"][c] for c in ("mel", "bcc", "akiec")))
    assert assessment["confidence"] == max(assessment["scores"].values())
    assert set(assessment["models"]) <= set(ROLES) and set(result["reference"]) == {
        "label",
        "confidence",
        "scores",
        "model",
    }
    manifest = json.loads((REPO / "models/manifest.json").read_text())["models"]
    assert {role: result["models"][role]["sha256"] for role in manifest} == {
        role: entry["sha256"] for role, entry in manifest.items()
    }
    assert set(result["timingsMs"]) == {"decode", "quality", "reference", "binary", "diagnosis", "check", "total"}
    assert result["timingsMs"]["total"] >= result["timingsMs"]["binary"]
    json.dumps(result)  # plain JSON types only (it goes into Firestore and HTTP)


def test_same_bytes_same_scores(pipeline):
    data = jpeg_bytes(LESION)
    first, second = pipeline.analyze(data).result, pipeline.analyze(data).result
    for role in ("binary", "diagnosis", "check"):
        assert first[role] == second[role]


def test_every_session_of_the_process_shares_one_thread_pool(pipeline):
    """ONNX Runtime lets a process have one shared pool, and then every session must use it: a second pipeline
    asking for another thread count runs on that pool, says so, and gives the same scores."""
    from shared.analysis import classifiers

    assert classifiers._pool_threads == pipeline.threads
    assert all(not c.session.get_session_options().use_per_session_threads for c in pipeline.classifiers.values())
    other = Pipeline(config.load({"MODEL_THREADS": str(pipeline.threads + 1)}))
    assert other.threads == pipeline.threads
    data = jpeg_bytes(LESION)
    for role in ("binary", "diagnosis", "check"):
        assert other.analyze(data).result[role]["scores"] == pytest.approx(
            pipeline.analyze(data).result[role]["scores"], abs=1e-6
        )


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "HEIF", "CMYK", "P+alpha", "16-bit", "grey", "exif-rotated"])
def test_every_format_phones_send_is_analysed(ungated_pipeline, fmt):
    if fmt == "HEIF":
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(LESION).save(buffer, quality=92)
        data = buffer.getvalue()
    elif fmt == "CMYK":
        data = jpeg_bytes(LESION.convert("CMYK"))
    elif fmt == "P+alpha":
        data = encoded(LESION.convert("RGBA").convert("P"), "PNG", transparency=0)
    elif fmt == "16-bit":
        data = encoded(Image.fromarray((np.asarray(LESION.convert("L"), np.uint16) * 257).astype("<u2")), "PNG")
    elif fmt == "grey":
        data = jpeg_bytes(LESION.convert("L"))
    elif fmt == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 8
        data = jpeg_bytes(LESION, exif=exif.tobytes())
    else:
        data = encoded(LESION, fmt)
    analysis = ungated_pipeline.analyze(data)
    assert analysis.status == "done", analysis.rejection
    if fmt == "exif-rotated":
        assert (analysis.result["quality"]["width"], analysis.result["quality"]["height"]) == (450, 600)


def test_large_jpeg_is_analysed_from_a_reduced_decode_and_reports_its_own_size(ungated_pipeline):
    large = synthetic_lesion(seed=1).resize((2400, 1800), Image.BICUBIC)
    result = ungated_pipeline.analyze(jpeg_bytes(large)).result
    assert (result["quality"]["width"], result["quality"]["height"]) == (2400, 1800)
    direct = ungated_pipeline.analyze_photo(decode(jpeg_bytes(large))).result  # full decode, same models
    for role in ("binary", "diagnosis", "check"):
        assert result[role]["scores"] == pytest.approx(direct[role]["scores"], abs=0.05)


def test_exif_rotation_changes_what_the_models_see(pipeline):
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down
    rotated = pipeline.analyze(jpeg_bytes(LESION, exif=exif.tobytes())).result
    upright = pipeline.analyze(jpeg_bytes(LESION.rotate(180))).result
    assert rotated["diagnosis"]["scores"] == pytest.approx(upright["diagnosis"]["scores"], abs=0.02)


@pytest.mark.parametrize("index", [0, 1], ids=["china", "flower"])
def test_a_photo_that_is_not_a_lesion_is_rejected_before_the_classifiers(pipeline, index):
    from sklearn.datasets import load_sample_images

    photo = Image.fromarray(load_sample_images().images[index])
    analysis = pipeline.analyze(jpeg_bytes(photo))
    assert analysis.status == "rejected" and analysis.rejection["code"] == "not_a_lesion"
    assert "skin lesion up close" in analysis.rejection["message"] or "up close" in analysis.rejection["message"]
    assert analysis.result is None and "binary" not in analysis.timings_ms


def test_blurred_photo_is_rejected_before_the_models(pipeline):
    analysis = pipeline.analyze(jpeg_bytes(synthetic_lesion(seed=11, blur=6)))
    assert analysis.status == "rejected" and analysis.rejection["code"] == "too_blurry"
    assert analysis.result is None and "binary" not in analysis.timings_ms


@pytest.mark.parametrize("data,code", [(b"", "missing_image"), (b"\xff\xd8\xff\xe0garbage", "invalid_image")])
def test_broken_bytes_raise_service_errors(pipeline, data, code):
    with pytest.raises(ServiceError) as caught:
        pipeline.analyze(data)
    assert caught.value.code == code


def test_truncated_and_bomb(pipeline):
    data = jpeg_bytes(LESION)
    with pytest.raises(ServiceError, match="decoded"):
        pipeline.analyze(data[: len(data) * 2 // 3])
    from tests.e2e.test_hostile import png_bomb

    with pytest.raises(ServiceError) as caught:
        pipeline.analyze(png_bomb(20000, 20000))
    assert caught.value.code == "image_too_large"


def test_real_phone_photos_are_analysed_and_mostly_pass_the_gate(pipeline, phone_photos):
    statuses = [pipeline.analyze(path.read_bytes()).status for path in phone_photos]
    assert statuses.count("done") >= 0.9 * len(statuses)


def test_torch_runtime_gives_the_same_scores(pipeline, torch_pipeline):
    for seed in range(3):
        data = jpeg_bytes(synthetic_lesion(seed=seed))
        onnx, torch = pipeline.analyze(data).result, torch_pipeline.analyze(data).result
        for role in ("binary", "diagnosis", "check"):
            for label, score in onnx[role]["scores"].items():
                assert abs(score - torch[role]["scores"][label]) <= 1e-3, (role, label)


def test_torch_runtime_refuses_a_yolo_detection_model(tmp_path):
    from shared.analysis.classifiers import ModelError, TorchClassifier, load_manifest

    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import DetectionModel

    entry = load_manifest(REPO / "models")["binary"]
    checkpoint = tmp_path / "yolo11n.pt"
    import torch

    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    model.args = {"task": "detect"}
    torch.save({"model": model, "train_args": {"task": "detect"}}, checkpoint)
    with pytest.raises(ModelError, match="classification"):
        TorchClassifier(dataclasses.replace(entry, torch_file=checkpoint, torch_sha256=None), 1)


def test_command_line_analyses_several_photos(tmp_path):
    paths = []
    for index, blur in enumerate((0, 6)):
        path = tmp_path / f"photo{index}.jpg"
        path.write_bytes(jpeg_bytes(synthetic_lesion(seed=index, blur=blur)))
        paths.append(str(path))
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "analyze", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    reports = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in reports] == ["done", "rejected"]
    assert set(reports[0]["result"]) == RESULT_FIELDS


def test_evaluation_scores_a_photo_exactly_as_the_service_does(pipeline, tmp_path):
    """``models.scores`` (what ``make evaluate``, ``models.fit`` and ``models.views`` read) decodes, crops and runs
    a photo as infer does. A 600x450 JPEG is decoded at half its size by infer (the DCT scale that still covers the
    reference's 192 px); an evaluation that decoded it in full read other pixels than the service."""
    from models.data import Sample
    from models.scores import model_inputs, run_batches
    from shared.analysis.calibration import calibrate
    from shared.analysis.classifiers import decode_side, load_manifest

    data = jpeg_bytes(LESION)
    path = tmp_path / "lesion.jpg"
    path.write_bytes(data)
    assert decode_side(load_manifest(REPO / "models").values()) == pipeline.decode_side
    result = pipeline.analyze(data, "image/jpeg").result
    sample = Sample(path, "lesion", "lesion", "nv", "test")
    for role, classifier in pipeline.classifiers.items():
        entry = classifier.entry
        logits = run_batches(classifier, model_inputs(entry, [sample], pipeline.decode_side))["logits"]
        evaluated = calibrate(logits, entry.temperature, entry.logit_bias)[0]
        served = np.array([result[role]["scores"][label] for label in entry.labels])
        np.testing.assert_allclose(evaluated, served, atol=1e-6, err_msg=role)
