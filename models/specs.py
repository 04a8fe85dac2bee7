"""Every served model's specification in one place: architecture, labels, input, training recipe."""

from __future__ import annotations

from shared.labels import DIAGNOSIS_LABELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

REFERENCE = dict(
    name="reference",
    arch="efficientnet_lite0",
    labels=DIAGNOSIS_LABELS,
    imgsz=160,
    epochs=3,
    lr=1e-3,
    batch=32,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    colour_constancy=True,
    frozen_blocks=3,
    sampling_power=0.5,
    label_smoothing=0.05,
    weight_decay=0.02,
)
