"""Two studies of the not-a-lesion gate, on the served reference ONNX's pooled features (``models/gate_study.json``).

    python -m models.gate_study

1. Does the gate reject skin without a lesion because it learned skin, or because it saw hands? Refits the served
   kind of gate (``models.gate.fit_gate``: the same lesions, threshold rule and features) on the not-a-lesion fit
   half without its 11K Hands photos, and counts the hands (both halves) and other photos it rejects.
2. Would lesions from other cameras be kept more often if the gate saw augmented lesions? Refits it with
   ``AUGMENTED_VIEWS`` views of each training lesion added to its positives (``models.augment``, the reference's
   training augmentation, applied to the crop before colour constancy, as another camera's photo reaches the
   gate), and compares it with the served gate on ``PROXY_VIEWS`` augmented views of the lesions that chose the
   threshold (HAM10000 val fit half, PAD-UFES-20 val): a proxy for other cameras that leaves the report sets alone.

Photos are decoded as infer decodes them.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import torch
from PIL import Image

from devstack.sample import synthetic_lesion
from models.augment import augment
from models.data import named_sets
from models.gate import HAM_TRAIN_STRIDE, fit_gate
from models.scores import MODELS_DIR
from shared.analysis.classifiers import decode_side, load_manifest, session_options
from shared.analysis.imaging import decode, encode_jpeg
from shared.analysis.preprocess import resize_center_crop, shades_of_grey, to_tensor
from shared.analysis.threads import usable_cpus

POOLED = "/global_pool/flatten/Flatten_output_0"  # the features both heads of the reference's graph read
RECORD = MODELS_DIR / "gate_study.json"
SETS = ("ham_train", "pad_train", "ham_val_fit", "pad_val", "not_a_lesion_fit", "not_a_lesion_test", "derm7pt")
AUGMENTED_VIEWS, PROXY_VIEWS = 2, 4
TRAIN_SEED, PROXY_SEED = 16, 1616  # fixed with the rule of round 16, before the first run
SYNTHETIC_SAMPLES = 24  # devstack.sample seeds 0..23, what the demo, bench and tests upload


class ReferenceFeatures:
    """The served reference graph with its pooled layer as a third output, on crops decoded as infer decodes."""

    def __init__(self) -> None:
        entries = load_manifest(MODELS_DIR)
        self.entry = entries["reference"]
        self.side = decode_side(entries.values())
        graph = onnx.load(str(self.entry.file))
        graph.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None))
        options, _ = session_options(usable_cpus())
        self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def crops(self, photos: list[bytes]) -> np.ndarray:
        """The centre crops at the reference's size (N x S x S x 3 uint8), before colour constancy."""
        return np.stack(
            [resize_center_crop(decode(data, reduce_to=self.side).image, self.entry.size) for data in photos]
        )

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features N x 1280, served gate logits N) of ``crops``, colour constancy applied as served."""
        runs = [
            self.session.run(
                ["gate", POOLED],
                {
                    self.session.get_inputs()[0].name: to_tensor(
                        np.stack([shades_of_grey(crop) for crop in crops[start : start + 64]]),
                        self.entry.mean,
                        self.entry.std,
                    )
                },
            )
            for start in range(0, len(crops), 64)
        ]
        return np.concatenate([pooled for _, pooled in runs]), np.concatenate([gate.reshape(-1) for gate, _ in runs])


def augmented(crops: np.ndarray, seed: int) -> np.ndarray:
    """One augmented view of each crop (``models.augment``), as uint8."""
    gen = torch.Generator().manual_seed(seed)
    out = np.empty_like(crops)
    for start in range(0, len(crops), 128):
        x = torch.from_numpy(crops[start : start + 128]).permute(0, 3, 1, 2).float() / 255.0
        out[start : start + 128] = (augment(x, gen) * 255.0).round().byte().permute(0, 2, 3, 1).numpy()
    return out


def hands_study(features: dict, gates: dict, samples: dict) -> dict:
    hands = {name: np.array([s.image_id.startswith("HAND_") for s in samples[name]]) for name in samples}
    weights, bias, _ = fit_gate(
        np.concatenate([features["ham_train"], features["pad_train"]]),
        features["not_a_lesion_fit"][~hands["not_a_lesion_fit"]],
        np.concatenate([features["ham_val_fit"], features["pad_val"]]),
    )
    record: dict = {}
    for name in ("not_a_lesion_fit", "not_a_lesion_test", "derm7pt"):
        rejected_served, rejected_refit = gates[name] < 0, features[name] @ weights + bias < 0
        row: dict = {"n": len(rejected_refit), "hands": int(hands[name].sum())}
        for label, rejected in (("served", rejected_served), ("fitted_without_hands", rejected_refit)):
            row[label] = {
                "hands_rejected": int(rejected[hands[name]].sum()),
                "others_rejected_share": round(float(rejected[~hands[name]].mean()), 4),
            }
        record[name] = row
    return record


def augmented_lesions_study(reference: ReferenceFeatures, crops: dict, features: dict, gates: dict) -> dict:
    from sklearn.datasets import load_sample_images

    train = np.concatenate([crops["ham_train"], crops["pad_train"]])
    views = [reference(augmented(train, TRAIN_SEED + view))[0] for view in range(AUGMENTED_VIEWS)]
    plain = np.concatenate([features["ham_train"], features["pad_train"]])
    held = np.concatenate([features["ham_val_fit"], features["pad_val"]])
    weights, bias, oof_rejected = fit_gate(np.concatenate([plain, *views]), features["not_a_lesion_fit"], held)
    held_crops = np.concatenate([crops["ham_val_fit"], crops["pad_val"]])
    proxy = [reference(augmented(held_crops, PROXY_SEED + view)) for view in range(PROXY_VIEWS)]
    samples = [encode_jpeg(synthetic_lesion(seed=seed), quality=90) for seed in range(SYNTHETIC_SAMPLES)]
    sample_features, sample_gates = reference(reference.crops(samples))
    photo_features, photo_gates = reference(
        reference.crops([encode_jpeg(Image.fromarray(p), quality=90) for p in load_sample_images().images])
    )
    served_held = np.concatenate([gates["ham_val_fit"], gates["pad_val"]])
    return {
        "proxy": f"{PROXY_VIEWS} augmented views of ham_val_fit + pad_val ({len(held)} photos)",
        "served": {
            "proxy_kept_share": round(float(np.mean([(gate >= 0).mean() for _, gate in proxy])), 4),
            "held_kept_share": round(float((served_held >= 0).mean()), 4),
            "synthetic_kept": int((sample_gates >= 0).sum()),
            "sklearn_photos_rejected": int((photo_gates < 0).sum()),
        },
        "fitted_with_augmented_lesions": {
            "proxy_kept_share": round(float(np.mean([(f @ weights + bias >= 0).mean() for f, _ in proxy])), 4),
            "held_kept_share": round(float((held @ weights + bias >= 0).mean()), 4),
            "fit_negatives_rejected_out_of_fold": round(oof_rejected, 4),
            "synthetic_kept": int((sample_features @ weights + bias >= 0).sum()),
            "sklearn_photos_rejected": int((photo_features @ weights + bias < 0).sum()),
        },
    }


def main() -> None:
    torch.set_num_threads(usable_cpus())
    reference = ReferenceFeatures()
    sets = named_sets()
    sets["ham_train"] = sets["ham_train"][::HAM_TRAIN_STRIDE]
    samples = {name: sets[name] for name in SETS}
    crops = {name: reference.crops([s.path.read_bytes() for s in samples[name]]) for name in SETS}
    features, gates = {}, {}
    for name in SETS:
        features[name], gates[name] = reference(crops[name])
    record = {
        "hands": hands_study(features, gates, samples),
        "augmented_lesions": augmented_lesions_study(reference, crops, features, gates),
    }
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
