"""Rebuild a torchvision state dict from an ONNX file exported by ``models.export``.

The committed ResNet50 ships once, as ONNX (its ``.pth`` would break the repository's size budget). The export
keeps every initializer under its state-dict name (no Conv+BN folding), storing conv and linear weights as
float16, so the torch runtime can load exactly the weights ONNX Runtime runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    model = onnx.load(str(path))
    state = {init.name: torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
             for init in model.graph.initializer}
    for name in [key for key in state if key.endswith(".running_mean")]:
        state[name.replace(".running_mean", ".num_batches_tracked")] = torch.tensor(0, dtype=torch.long)
    return state
