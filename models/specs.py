"""Every served model's specification in one place: architecture, labels, input, training recipe."""

from __future__ import annotations

from shared.labels import BINARY_LABELS, DIAGNOSIS_LABELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLING_POWER = 0.5  # the students draw class c with weight n_c ** -SAMPLING_POWER

# The three students trained from scratch by ``models.train`` and exported by ``models.export``.
STUDENTS = {
    "diagnosis": dict(
        arch="yolo11n-cls.yaml",
        labels=DIAGNOSIS_LABELS,
        imgsz=128,
        epochs=24,
        lr=2e-3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    ),
    "binary": dict(
        arch="yolo11n-cls.yaml",
        labels=BINARY_LABELS,
        imgsz=128,
        epochs=10,
        lr=1e-3,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        init_from="diagnosis",
    ),
    "check": dict(
        arch="resnet50", labels=DIAGNOSIS_LABELS, imgsz=80, epochs=8, lr=1e-3, mean=IMAGENET_MEAN, std=IMAGENET_STD
    ),
}

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
