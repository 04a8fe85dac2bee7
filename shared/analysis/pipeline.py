"""The analysis pipeline: image bytes in, the ``result`` (or a ``rejection``) of API.md out. No cloud involved."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.analysis import quality
from shared.analysis.classifiers import calibrate, load_classifiers
from shared.analysis.imaging import Photo, decode
from shared.analysis.preprocess import resize_center_crop
from shared.analysis.threads import usable_cpus
from shared.config import Config
from shared.labels import group_of


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
        self.decode_side = max(classifier.entry.size for classifier in self.classifiers.values())

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
        """Quality gate and models on a decoded photo; ``timings_ms`` per stage, no total."""
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

        inputs: dict[int, np.ndarray] = {}
        probs = {}
        for role, classifier in self.classifiers.items():
            size = classifier.entry.size
            if size not in inputs:
                inputs[size] = resize_center_crop(photo.image, size)[None]
            probs[role] = classifier.raw(inputs[size])[0]
            lap(role)
        return Analysis("done", result=self.assemble(measured, probs), timings_ms=timings)

    def assemble(self, measured: quality.Quality, raw: dict[str, np.ndarray]) -> dict:
        out = {}
        for role, classifier in self.classifiers.items():
            entry = classifier.entry
            out[role] = prediction(entry.labels, calibrate(raw[role], entry.temperature, entry.logit_bias), entry.name)
        out["check"]["agrees"] = group_of(out["check"]["label"]) == out["binary"]["label"]
        conclusive = (
            out["binary"]["confidence"] >= self.conf_threshold
            and out["check"]["confidence"] >= self.conf_threshold
            and out["check"]["agrees"]
        )
        return {
            "quality": quality.report(measured, self.limits),
            "binary": out["binary"],
            "diagnosis": out["diagnosis"],
            "check": out["check"],
            "conclusive": bool(conclusive),
            "models": {
                role: {"name": c.entry.name, "version": c.entry.version, "sha256": c.sha256}
                for role, c in self.classifiers.items()
            },
        }
