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
    imgsz=192,  # served size: the last stage's
    batch=32,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    colour_constancy=True,
    sampling_power=0.5,
    label_smoothing=0.05,
    weight_decay=0.02,
    # Run in order, each from the previous stage's EMA weights (one stage: the whole network from ImageNet).
    stages=(dict(name="full", epochs=4, imgsz=192, lr=1e-3, frozen_blocks=0, freeze_bn=False),),
)
# models/weights/<REFERENCE_NAME>.onnx and .history.json
REFERENCE_NAME = "reference-" + REFERENCE["arch"].replace("_", "-")

# Knowledge distillation of the students from the reference (``models.distil``): soft targets at temperature T,
# weighted ALPHA against the labels' cross-entropy, on ``views`` cached augmented views of the training images.
# The teacher reads shades of grey, as served; a student reads what its starting weights were trained on.
DISTIL = dict(
    T=2.0,
    alpha=0.7,
    views=4,
    students={
        "diagnosis": dict(imgsz=128, epochs=10, lr=5e-4),
        "binary": dict(imgsz=128, epochs=5, lr=5e-4),
        "check": dict(imgsz=112, epochs=3, lr=3e-4),
    },
)

# Test-time views each model is served on (``input.views`` in the manifest, written by ``models.views``): log-scores
# averaged over them. ``python -m models.views`` measures every identity + view pair on the fit sets; a model gets
# the best pair where it raises the fit score by at least 0.005, since every view costs one more model run.
VIEWS = {
    "reference": ("identity", "rot180"),
    "binary": ("identity",),
    "diagnosis": ("identity", "hflip"),
    "check": ("identity",),
}
