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

PREFIX = "model."  # models.export wraps the network in a module whose attribute is ``model``


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    graph = onnx.load(str(path)).graph
    tensors = {init.name: numpy_helper.to_array(init).astype(np.float32) for init in graph.initializer}
    for node in graph.node:  # the exporter dedupes equal tensors into Identity nodes (e.g. twin BN biases)
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    state = {
        name.removeprefix(PREFIX): torch.from_numpy(array.copy())
        for name, array in tensors.items()
        if name.startswith(PREFIX)
    }
    for name in [key for key in state if key.endswith(".running_mean")]:
        state[name.replace(".running_mean", ".num_batches_tracked")] = torch.tensor(0, dtype=torch.long)
    return state
