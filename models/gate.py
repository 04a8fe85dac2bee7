"""The not-a-lesion gate: a logistic regression on the reference model's pooled features.

    python -m models.gate

Positives: lesions the reference model trained on (every third HAM10000 train image, PAD-UFES-20 train); negatives: the ``fit`` half
of ``external/not-a-lesion`` (the other half is for evaluation). The threshold keeps ``KEEP_TARGET`` of the
``fit`` lesions it never trained on (HAM10000 validation ``fit`` half, PAD-UFES-20 val), or lower while it still
rejects ``REJECT_TARGET`` of the fit negatives; it is folded into the bias, so the exported gate logit is >= 0 exactly when the photo is kept (probability 0.5). Writes
``build/reference/gate.json`` (weights in the model's feature space, bias, and the fit figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models import checkpoints
from models.data import load_constant_pixels, named_sets
from models.nets import normalise
from models.reference import BUILD_DIR, build
from models.specs import REFERENCE

KEEP_TARGET = 0.995
REJECT_TARGET = 0.98
HAM_TRAIN_STRIDE = 3  # every third HAM10000 training image is plenty for a linear gate, at a third of the time
GATE_PATH = BUILD_DIR / "gate.json"
REFERENCE_WEIGHTS = BUILD_DIR / "reference.pth"  # what models.reference ends with


def load_reference(spec: dict = REFERENCE, path: Path = REFERENCE_WEIGHTS) -> torch.nn.Module:
    model = build(spec, "none")
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model.eval()


@torch.no_grad()
def features_and_logits(model, samples, spec: dict = REFERENCE, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features (N x 1280) and diagnosis logits (N x 7), on the served input (crop, colour constancy)."""
    pixels = torch.from_numpy(load_constant_pixels(samples, spec["imgsz"]))
    feats, logits = [], []
    for start in range(0, len(pixels), batch):
        x = normalise(pixels[start : start + batch].permute(0, 3, 1, 2).float() / 255.0, spec["mean"], spec["std"])
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        feats.append(pooled.numpy())
        logits.append(model.classifier(pooled).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def fit_gate(lesions: np.ndarray, others: np.ndarray, held_lesions: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Logistic regression (standardised features, balanced classes), then the bias moved to the lower of two
    thresholds: the one that keeps ``KEEP_TARGET`` of ``held_lesions`` and the one that still rejects
    ``REJECT_TARGET`` of ``others`` scored out of fold (5-fold cross-validation, since the regression has seen
    them), so that lesions from other cameras get the margin the negatives leave. Returns weights and bias on the
    raw features, and the share of ``others`` rejected out of fold at that threshold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([lesions, others])
    y = np.concatenate([np.ones(len(lesions)), np.zeros(len(others))])
    mean, std = x.mean(0), x.std(0) + 1e-6
    standard = (x - mean) / std
    clf = LogisticRegression(C=0.05, class_weight="balanced", max_iter=2000)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    out_of_fold = cross_val_predict(clf, standard, y, cv=folds, method="decision_function")
    clf.fit(standard, y)
    weights = clf.coef_[0] / std
    bias = float(clf.intercept_[0] - (mean * weights).sum())
    keep_all_but = float(np.quantile(held_lesions @ weights + bias, 1.0 - KEEP_TARGET))
    reject_enough = float(np.quantile(out_of_fold[y == 0], REJECT_TARGET))
    threshold = min(keep_all_but, reject_enough)
    return weights, bias - threshold, float(np.mean(out_of_fold[y == 0] < threshold))


def main() -> None:
    torch.set_num_threads(2)
    sets = named_sets()
    model = load_reference()
    sets["ham_train"] = sets["ham_train"][::HAM_TRAIN_STRIDE]
    names = ("ham_train", "pad_train", "not_a_lesion_fit", "ham_val_fit", "pad_val", "not_a_lesion_test")
    cache = BUILD_DIR / f"gate-features-{checkpoints.digest(REFERENCE_WEIGHTS)}.npz"
    if not cache.exists():
        checkpoints.atomic_savez(cache, **{name: features_and_logits(model, sets[name])[0] for name in names})
    feats = dict(np.load(cache))
    weights, bias, oof_rejected = fit_gate(
        np.concatenate([feats["ham_train"], feats["pad_train"]]),
        feats["not_a_lesion_fit"],
        np.concatenate([feats["ham_val_fit"], feats["pad_val"]]),
    )
    share = {name: float(np.mean(f @ weights + bias >= 0)) for name, f in feats.items()}
    GATE_PATH.write_text(
        json.dumps(
            {
                "weights": weights.tolist(),
                "bias": bias,
                "keep_target": KEEP_TARGET,
                "reject_target": REJECT_TARGET,
                "kept_share": share,
                "fit_negatives_rejected_out_of_fold": oof_rejected,
            }
        )
        + "\n"
    )
    print(json.dumps(share, indent=1))


if __name__ == "__main__":
    main()
