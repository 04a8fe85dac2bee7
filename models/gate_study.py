"""Does the not-a-lesion gate reject skin without a lesion because it learned skin, or because it saw hands?

    python -m models.gate_study

Refits the served kind of gate (``models.gate.fit_gate``: the same lesions, threshold rule and features, here read
from the served reference ONNX's pooled layer through the serving code's decoding) on the not-a-lesion fit half
without its 11K Hands photos, and counts the hands (both halves) and other photos it rejects. Writes
``models/gate_study.json``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from models.data import named_sets
from models.gate import HAM_TRAIN_STRIDE, fit_gate
from models.scores import MODELS_DIR, model_inputs
from shared.analysis.classifiers import decode_side, load_manifest, session_options
from shared.analysis.preprocess import to_tensor
from shared.analysis.threads import usable_cpus

POOLED = "/global_pool/flatten/Flatten_output_0"  # the features both heads of the reference's graph read
RECORD = MODELS_DIR / "gate_study.json"
SETS = ("ham_train", "pad_train", "ham_val_fit", "pad_val", "not_a_lesion_fit", "not_a_lesion_test", "derm7pt")


def pooled_features(names: tuple[str, ...] = SETS) -> tuple[dict, dict, dict]:
    """(features, served gate logits, samples) per set, the reference run as served on the crop alone."""
    entries = load_manifest(MODELS_DIR)
    entry = entries["reference"]
    graph = onnx.load(str(entry.file))
    graph.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None))
    options, _ = session_options(usable_cpus())
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    sets = named_sets()
    sets["ham_train"] = sets["ham_train"][::HAM_TRAIN_STRIDE]
    side = decode_side(entries.values())
    features, gates = {}, {}
    for name in names:
        pixels = model_inputs(entry, sets[name], side)
        runs = [
            session.run(
                ["gate", POOLED], {session.get_inputs()[0].name: to_tensor(pixels[i : i + 64], entry.mean, entry.std)}
            )
            for i in range(0, len(pixels), 64)
        ]
        gates[name] = np.concatenate([gate.reshape(-1) for gate, _ in runs])
        features[name] = np.concatenate([pooled for _, pooled in runs])
    return features, gates, {name: sets[name] for name in names}


def main() -> None:
    features, gates, samples = pooled_features()
    hands = {name: np.array([s.image_id.startswith("HAND_") for s in samples[name]]) for name in samples}
    weights, bias = fit_gate(
        np.concatenate([features["ham_train"], features["pad_train"]]),
        features["not_a_lesion_fit"][~hands["not_a_lesion_fit"]],
        np.concatenate([features["ham_val_fit"], features["pad_val"]]),
    )
    record: dict = {"question": __doc__.splitlines()[0], "sets": {}}
    for name in ("not_a_lesion_fit", "not_a_lesion_test", "derm7pt"):
        rejected_served, rejected_refit = gates[name] < 0, features[name] @ weights + bias < 0
        row = {"n": len(rejected_refit), "hands": int(hands[name].sum())}
        for label, rejected in (("served", rejected_served), ("fitted_without_hands", rejected_refit)):
            row[label] = {
                "hands_rejected": int(rejected[hands[name]].sum()),
                "others_rejected_share": round(float(rejected[~hands[name]].mean()), 4),
            }
        record["sets"][name] = row
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
