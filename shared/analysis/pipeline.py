"""The analysis pipeline: image bytes in, the ``result`` (or a ``rejection``) of API.md out. No cloud involved."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.analysis import quality
from shared.analysis.assessment import Combination, combine, conclusive, malignant_probability
from shared.analysis.calibration import calibrate
from shared.analysis.classifiers import ModelError, decode_side, load_classifiers, load_manifest_section
from shared.analysis.imaging import Photo, decode
from shared.analysis.preprocess import model_input
from shared.analysis.threads import usable_cpus
from shared.config import Config
from shared.labels import DIAGNOSIS_LABELS, group_of

NOT_A_LESION = {
    "code": "not_a_lesion",
    "message": "This photo does not look like a skin lesion. Photograph one mole or skin spot up close, "
    "centred and filling most of the frame, in good light.",
}
STUDENTS = ("binary", "diagnosis", "check")


@dataclass
class Analysis:
    status: str  # "done" or "rejected"
    result: dict | None = None
    rejection: dict | None = None
    timings_ms: dict = field(default_factory=dict)


def prediction(labels: tuple[str, ...], probs: np.ndarray, model_name: str) -> dict:
    best = int(np.argmax(probs))
    return {
        "label": labels[best],
        "confidence": float(probs[best]),
        "scores": {label: float(p) for label, p in zip(labels, probs)},
        "model": model_name,
    }


class Pipeline:
    """Loads the models once; ``analyze`` is then safe to call for every photo (one at a time per instance)."""

    def __init__(self, config: Config):
        self.classifiers = load_classifiers(config.MODELS_DIR, config.MODEL_RUNTIME, usable_cpus(config.MODEL_THREADS))
        self.threads = self.classifiers["check"].threads  # the thread count the models really run with
        self.limits = quality.Thresholds(config.BLUR_THRESHOLD, config.DARK_THRESHOLD, config.BRIGHT_THRESHOLD)
        self.conf_threshold = config.CONF_THRESHOLD
        self.min_side = config.MIN_IMAGE_SIDE
        self.max_pixels = config.MAX_IMAGE_PIXELS
        self.decode_side = decode_side(classifier.entry for classifier in self.classifiers.values())
        self.combination = Combination.from_manifest(load_manifest_section(config.MODELS_DIR, "assessment"))
        self.gate_threshold = config.GATE_THRESHOLD

    def analyze(self, data: bytes, content_type: str | None = None) -> Analysis:
        """Decode and analyse; invalid bytes raise ServiceError (400/415/422)."""
        started = time.perf_counter()
        photo = decode(
            data, content_type, min_side=self.min_side, max_pixels=self.max_pixels, reduce_to=self.decode_side
        )
        decode_ms = (time.perf_counter() - started) * 1000
        analysis = self.analyze_photo(photo)
        analysis.timings_ms = {"decode": round(decode_ms, 2), **analysis.timings_ms}
        analysis.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        if analysis.result is not None:
            analysis.result["timingsMs"] = analysis.timings_ms
        return analysis

    def analyze_photo(self, photo: Photo) -> Analysis:
        """Quality gate, not-a-lesion gate and models on a decoded photo; ``timings_ms`` per stage, no total."""
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 2)
            clock = now

        measured = quality.measure(photo.image, (photo.width, photo.height))
        rejection = quality.rejection(measured, self.limits)
        lap("quality")
        if rejection is not None:
            return Analysis("rejected", rejection=rejection, timings_ms=timings)

        inputs: dict[tuple[int, bool], np.ndarray] = {}
        reference, gate_logit = self._run("reference", photo, inputs)
        lap("reference")
        if gate_logit is None:
            raise ModelError("the reference model has no gate output; run `make export`.")
        if not self.is_lesion(gate_logit):
            return Analysis("rejected", rejection=dict(NOT_A_LESION), timings_ms=timings)
        scores = {"reference": reference}
        for role in STUDENTS:
            scores[role] = self._run(role, photo, inputs)[0]
            lap(role)
        return Analysis("done", result=self.assemble(measured, scores), timings_ms=timings)

    def _run(
        self, role: str, photo: Photo, inputs: dict[tuple[int, bool], np.ndarray]
    ) -> tuple[np.ndarray, float | None]:
        """One model's log-scores for the photo and its gate logit if it has one; the input is prepared once per
        (size, colour constancy)."""
        entry = self.classifiers[role].entry
        key = (entry.size, entry.colour_constancy)
        if key not in inputs:
            inputs[key] = model_input(photo.image, entry.size, entry.colour_constancy)[None]
        logits, gate = self.classifiers[role].run(inputs[key])
        return logits[0], (None if gate is None else float(gate[0]))

    def is_lesion(self, gate_logit: float) -> bool:
        """The not-a-lesion gate: the probability that the photo is a lesion close-up reaches the threshold."""
        return 1.0 / (1.0 + np.exp(-gate_logit)) >= self.gate_threshold

    def assemble(self, measured: quality.Quality, scores: dict[str, np.ndarray]) -> dict:
        probs = {
            role: calibrate(scores[role], c.entry.temperature, c.entry.logit_bias)
            for role, c in self.classifiers.items()
        }
        out = {role: prediction(c.entry.labels, probs[role], c.entry.name) for role, c in self.classifiers.items()}
        out["check"]["agrees"] = group_of(out["check"]["label"]) == out["binary"]["label"]
        assessment = combine(probs, self.combination)
        summary = prediction(DIAGNOSIS_LABELS, assessment, "assessment")
        del summary["model"]
        summary["malignant"] = float(malignant_probability(assessment))
        summary["models"] = sorted(self.combination.weights)
        return {
            "quality": quality.report(measured, self.limits),
            "binary": out["binary"],
            "diagnosis": out["diagnosis"],
            "check": out["check"],
            "reference": out["reference"],
            "assessment": summary,
            "conclusive": bool(conclusive(assessment, probs, self.combination, self.conf_threshold)),
            "models": {
                role: {"name": c.entry.name, "version": c.entry.version, "sha256": c.sha256}
                for role, c in self.classifiers.items()
            },
        }
