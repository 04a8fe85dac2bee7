"""The networks and their weights: what the student trainer, the exporter, the reference trainer and the gate
share (building a model, its logits, input normalisation, the weights' paths, a weight average)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

MODELS_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = MODELS_DIR / "weights"


def weights_path(name: str, arch: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    if arch == "resnet50":
        return weights_dir / f"{name}-resnet50.pth"
    return weights_dir / f"{name}-{Path(arch).stem}.pt"


def build_model(arch: str, labels: tuple[str, ...], pretrained: str = "scratch") -> torch.nn.Module:
    """The student architecture; ``pretrained`` is ``official`` (ImageNet weights downloaded the standard way),
    a local file, or ``scratch``/``wheel`` (no ImageNet weights exist in the wheels for these architectures)."""
    from models.pretrained import resnet50, yolo_classifier

    if arch == "resnet50":
        return resnet50(pretrained, len(labels))
    return yolo_classifier(arch, pretrained, labels)


def logits_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits in train and eval mode alike (ultralytics' head returns (probs, logits) in eval mode)."""
    out = model(x)
    return out[1] if isinstance(out, (tuple, list)) else out


class ExponentialAverage:
    """EMA of weights and BN statistics whose decay ramps up (``d * (1 - exp(-step / 2000))``), as in timm."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.steps = 0
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = self.decay * (1 - math.exp(-self.steps / 2000))
        for mine, theirs in zip(self.module.state_dict().values(), model.state_dict().values()):
            if mine.dtype.is_floating_point:
                mine.mul_(decay).add_(theirs.detach(), alpha=1 - decay)
            else:
                mine.copy_(theirs)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
