"""The label sets and the benign/malignant grouping: the one source for serving, training and tests."""

from __future__ import annotations

DIAGNOSIS_LABELS: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
BINARY_LABELS: tuple[str, ...] = ("benign", "malignant")
MALIGNANT: frozenset[str] = frozenset({"mel", "bcc", "akiec"})


def group_of(label: str) -> str:
    """``benign`` or ``malignant`` for a diagnosis; a label already grouped that way passes through."""
    if label in BINARY_LABELS:
        return label
    return "malignant" if label in MALIGNANT else "benign"
