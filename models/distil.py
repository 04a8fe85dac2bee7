"""Distil the students (YOLO11 binary and diagnosis, ResNet50 check) from the served reference model.

    python -m models.distil [--model diagnosis|binary|check|all] [--views N] [--fresh-views] [--seed S] [--resume]
                            [--from-scratch [--epochs E] [--plain-crops]] [--correct-teacher] [--alpha A]
                            [--mild-views]

Three units:

- ``ViewCache``: ``views`` augmented views of every training image (HAM10000 train + PAD-UFES-20 train,
  ``models.augment``, or with ``--mild-views`` the from-scratch students' own ``models.train.augment``), made once
  at the teacher's size and scored by the served reference ONNX graph on shades of grey, as it is served. Each
  view is stored down-scaled to every student size with the teacher's logits, in ``build/distil/views-<digest>.npz``.
  A student epoch reads one view, so it costs no teacher forward pass.
  A student reads the input its starting weights were trained on (``reads_shades_of_grey``): shades of grey for
  one distilled before, else the plain crop, the same augmentation drawn on it. Moved to shades of grey alone, a
  from-scratch student loses most of its balanced accuracy (diagnosis 0.636 to 0.39 on the HAM10000 fit half).
- ``DistilTrainer``: the student trainer (``models.train.Trainer``) with the loss
  ``ALPHA * T^2 * KL(teacher_T || student_T) + (1 - ALPHA) * CE(label)``; for the binary student the teacher's
  probabilities are summed into benign / malignant. ``--correct-teacher``: where the teacher's top class is not the
  label, the two probabilities are swapped (the reference is wrong on about one in five of its own training views).
- ``select``: each student starts from its served weights (``models/weights/<role>-<arch>.pt``/``.pth``, else
  its ONNX file; ``--resume``: from its last candidate; ``--from-scratch``: from fresh weights, for its
  from-scratch epochs and learning rate, reading shades of grey as its teacher does, or the plain crop with
  ``--plain-crops``) and is written to ``build/distil/``. The distilled and the served student are then scored
  on the fit sets (HAM10000 val fit half, PAD-UFES-20 val; never Derm7pt or a report set). The distilled one
  replaces the served one (weights and curves into ``models/weights/``, where ``models.export`` reads them) only
  if its score, the mean over the two sources of balanced accuracy and malignant AUC, is higher, neither
  source's own score falls by more than 0.01 (so the 60 PAD-UFES-20 val photos cannot carry it alone), and the
  assessment's out-of-fold balanced accuracy on the fit sets, refitted with the candidate in the served one's place,
  falls by no more than 0.01 either; otherwise its curves go to ``models/experiments/``. Either way the figures are
  kept in the curves' ``selection``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import augment as strong
from models import checkpoints
from models.data import SHARED_DATA, label_indices, load_constant_pixels, load_model_pixels, named_sets
from models.export import load_student, trained_on_shades_of_grey
from models.fit import assessment_out_of_fold, training_log_prior
from models.metrics import auc, balanced_accuracy
from models.nets import MODELS_DIR, WEIGHTS_DIR, build_model, logits_of, normalise, weights_path
from models.scores import served_scores
from models.specs import DISTIL, REFERENCE, REFERENCE_NAME, STUDENTS, VIEWS
from models.train import Pixels, TrainConfig, Trainer, load_matching, load_weights, predict, save, train_args
from models.train import augment as mild
from shared.analysis.calibration import calibrate, log_probs
from shared.analysis.classifiers import session_options
from shared.analysis.onnx_state_dict import state_dict_from_onnx
from shared.analysis.preprocess import mean_over_views, with_views
from shared.analysis.threads import usable_cpus
from shared.labels import BINARY_LABELS, DIAGNOSIS_LABELS, MALIGNANT

BUILD_DIR = MODELS_DIR.parent / "build" / "distil"
TEACHER = WEIGHTS_DIR / f"{REFERENCE_NAME}.onnx"
# The views' augmentation: the teacher's strong colour and scale augmentation, or the from-scratch students' own.
AUGMENTATIONS = {"strong": strong.augment, "mild": mild}


@dataclass
class ViewCache:
    """The teacher's logits on ``V`` augmented views of every training image (V x N x 7) and the students' views
    of them: stored per student size (V x N x S x S x 3 uint8), or, with ``source`` (the students' images at the
    teacher's size), drawn again from the view's seed when a student epoch reads it (``--fresh-views``)."""

    pixels: dict[int, np.ndarray]
    teacher_logits: np.ndarray
    labels: np.ndarray  # diagnosis index per image
    source: torch.Tensor | None = None
    seed: int = 0
    augmentation: str = "strong"

    def view(self, size: int, index: int) -> np.ndarray:
        """The students' pixels of view ``index`` at ``size`` (N x S x S x 3 uint8)."""
        if self.source is None:
            return self.pixels[size][index]
        return student_views(self.source, index, self.seed, [size], self.augmentation)[size]


def view_generator(seed: int, view: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + view)


def to_size(pixels: torch.Tensor, size: int) -> np.ndarray:
    small = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (small.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def augmented_batches(
    x: torch.Tensor, view: int, seed: int, augmentation: str = "strong", batch: int = 64
) -> Iterator[tuple[int, torch.Tensor]]:
    """View ``view`` of ``x`` batch by batch (start index, N x 3 x S x S floats in [0, 1]): the ``augmentation``
    drawn for that view from its seed (the draws depend on the seed and the batch size alone, not on the images)."""
    gen = view_generator(seed, view)
    for start in range(0, len(x), batch):
        yield start, AUGMENTATIONS[augmentation](x[start : start + batch].permute(0, 3, 1, 2).float() / 255.0, gen)


def student_views(
    x: torch.Tensor, view: int, seed: int, sizes: list[int], augmentation: str = "strong", batch: int = 64
) -> dict[int, np.ndarray]:
    """View ``view`` of ``x`` at every size (N x S x S x 3 uint8), as :func:`augmented_batches` draws it."""
    if not sizes:
        return {}
    out = {size: np.empty((len(x), size, size, 3), np.uint8) for size in sizes}
    for start, pixels in augmented_batches(x, view, seed, augmentation, batch):
        for size in sizes:
            out[size][start : start + batch] = to_size(pixels, size)
    return out


def make_views(
    x: torch.Tensor,
    sizes: list[int],
    views: int,
    seed: int,
    teacher: Path = TEACHER,
    batch: int = 64,
    student_x: torch.Tensor | None = None,
    augmentation: str = "strong",
) -> dict:
    """``views`` augmentations of ``x`` (N x S x S x 3 uint8 at the teacher's size; ``AUGMENTATIONS``), scored
    by the ``teacher`` ONNX graph (input ``images``, output ``logits``), each stored at every student size. With
    ``student_x`` (the same images, prepared otherwise) the stored views are the same augmentations drawn on it."""
    import onnxruntime as ort

    options, _ = session_options(usable_cpus())  # the process's one ONNX Runtime pool, as serving uses
    session = ort.InferenceSession(str(teacher), options, providers=["CPUExecutionProvider"])
    out = {size: np.empty((views, len(x), size, size, 3), np.uint8) for size in sizes}
    logits = np.empty((views, len(x), len(DIAGNOSIS_LABELS)), np.float32)
    for view in range(views):
        tic = time.time()
        for start, pixels in augmented_batches(x, view, seed, augmentation, batch):
            teacher_in = normalise(pixels, REFERENCE["mean"], REFERENCE["std"]).numpy()
            logits[view, start : start + batch] = session.run(["logits"], {"images": teacher_in})[0]
            if student_x is None:  # the students' view is the teacher's, scaled down
                for size in sizes:
                    out[size][view, start : start + batch] = to_size(pixels, size)
        if student_x is not None:
            for size, student_pixels in student_views(student_x, view, seed, sizes, augmentation, batch).items():
                out[size][view] = student_pixels
        print(f"[views] view {view + 1}/{views} in {time.time() - tic:.0f}s", flush=True)
    return {"logits": logits, **{f"pixels_{size}": array for size, array in out.items()}}


def load_views(
    sizes: list[int],
    views: int,
    data_root: Path = SHARED_DATA,
    seed: int = 0,
    shades_of_grey: bool = True,
    fresh: bool = False,
    augmentation: str = "strong",
) -> ViewCache:
    """The cached views (made on first use; the cache's name hashes the teacher, the sizes, the view count, the
    augmentation and the students' input), on shades of grey or, if not ``shades_of_grey``, on the plain crop.
    ``fresh`` caches the teacher's logits alone, and the students' views are drawn again each epoch, so many views
    cost no memory."""
    train = named_sets(data_root)
    samples = train["ham_train"] + train["pad_train"]
    stored_sizes = [] if fresh else sorted(sizes)
    digest = checkpoints.digest(TEACHER)
    mild_suffix = "-mild" * (augmentation == "mild")
    key = f"{digest}-{'-'.join(map(str, stored_sizes)) or 'logits'}-{views}-{seed}{mild_suffix}"
    path = BUILD_DIR / f"views-{key}{'' if shades_of_grey or fresh else '-plain'}.npz"
    labels = label_indices(samples, DIAGNOSIS_LABELS)
    build = not path.exists()
    student_x = None  # the students' images at the teacher's size, where they differ from the teacher's or are redrawn
    if fresh or (build and not shades_of_grey):
        student_x = torch.from_numpy(load_model_pixels(samples, REFERENCE["imgsz"], shades_of_grey))
    if build:
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        reuse = fresh and shades_of_grey  # the students' images are then the teacher's
        teacher_x = student_x if reuse else torch.from_numpy(load_constant_pixels(samples, REFERENCE["imgsz"]))
        student_input = None if shades_of_grey else student_x
        made = make_views(teacher_x, stored_sizes, views, seed, student_x=student_input, augmentation=augmentation)
        checkpoints.atomic_savez(path, **made)
    stored = np.load(path)
    return ViewCache(
        {size: stored[f"pixels_{size}"] for size in stored_sizes},
        stored["logits"],
        labels,
        source=student_x if fresh else None,
        seed=seed,
        augmentation=augmentation,
    )


def soft_targets(teacher_logits: torch.Tensor, labels: tuple[str, ...], temperature: float) -> torch.Tensor:
    """The teacher's tempered probabilities over the student's labels (diagnosis, or summed to benign/malignant)."""
    probs = torch.softmax(teacher_logits / temperature, dim=1)
    if labels == BINARY_LABELS:
        malignant = torch.tensor([label in MALIGNANT for label in DIAGNOSIS_LABELS])
        return torch.stack([probs[:, ~malignant].sum(1), probs[:, malignant].sum(1)], dim=1)
    return probs


def corrected(targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Knowledge adjustment (Wen et al., 2019): where the teacher's top class is not the label, its probability and
    the label's are swapped, so the target's top class is the label and the rest of the teacher's answer is kept."""
    top = targets.argmax(1)
    rows = (top != y).nonzero().squeeze(1)
    out = targets.clone()
    out[rows, top[rows]] = targets[rows, y[rows]]
    out[rows, y[rows]] = targets[rows, top[rows]]
    return out


def distillation_loss(
    student_logits: torch.Tensor, targets: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    log_student = torch.log_softmax(student_logits / temperature, dim=1)
    soft = F.kl_div(log_student, targets, reduction="batchmean") * temperature**2
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, y, label_smoothing=0.05)


class DistilTrainer(Trainer):
    """Trains on the cached views (view ``epoch % V``) against the teacher's soft targets (``correct``: with its
    wrong answers corrected, :func:`corrected`) and the labels."""

    def __init__(
        self,
        config: TrainConfig,
        model: torch.nn.Module,
        pixels: Pixels,
        gen,
        cache: ViewCache,
        correct: bool = False,
        alpha: float = DISTIL["alpha"],
    ):
        super().__init__(config, model, pixels, gen)
        self.cache, self.alpha = cache, alpha
        self.view_pixels = torch.empty(0)
        views, n = cache.teacher_logits.shape[:2]
        targets = soft_targets(torch.from_numpy(cache.teacher_logits).flatten(0, 1), config.labels, DISTIL["T"])
        if correct:
            targets = corrected(targets, pixels.y_train.repeat(views))
        self.targets = targets.view(views, n, -1)
        self.view = 0

    def train_epoch(self) -> float:
        self.view = self.epoch % len(self.cache.teacher_logits)
        self.view_pixels = torch.from_numpy(self.cache.view(self.config.imgsz, self.view))
        return super().train_epoch()

    def batch_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Against the teacher's soft targets on this epoch's cached view, and the labels."""
        x = self.view_pixels[batch].permute(0, 3, 1, 2).float() / 255.0
        logits = logits_of(self.model, normalise(x, self.config.spec["mean"], self.config.spec["std"]))
        targets = self.targets[self.view, batch]
        return distillation_loss(logits, targets, self.pixels.y_train[batch], DISTIL["T"], self.alpha)


def reads_shades_of_grey(name: str, served_dir: Path = WEIGHTS_DIR) -> bool:
    """Whether the student's weights in ``served_dir`` were trained on shades-of-grey inputs (distilled before)."""
    history = weights_path(name, STUDENTS[name]["arch"], served_dir).with_suffix(".history.json")
    return history.exists() and trained_on_shades_of_grey(json.loads(history.read_text())["train_args"])


def served_file(name: str, served_dir: Path = WEIGHTS_DIR) -> Path:
    """``name``'s weights in ``served_dir``: the torch file, else the ONNX file; neither there is an error, not a
    silent start from fresh weights."""
    served = weights_path(name, STUDENTS[name]["arch"], served_dir)
    for path in (served, served.with_suffix(".onnx")):
        if path.exists():
            return path
    raise FileNotFoundError(f"{served} (or its .onnx): no {name} weights to start from")


def load_served(model: torch.nn.Module, name: str, served_dir: Path = WEIGHTS_DIR) -> None:
    """Copy the matching tensors of ``name``'s weights in ``served_dir`` into ``model``."""
    path = served_file(name, served_dir)
    if path.suffix == ".onnx":
        load_matching(model, state_dict_from_onnx(path))
    else:
        load_weights(model, path)


def starting_model(config: TrainConfig, served_dir: Path = WEIGHTS_DIR) -> tuple[torch.nn.Module, list[dict]]:
    """The student with its served weights and its curves so far."""
    model = build_model(config.arch, config.labels)
    load_served(model, config.name, served_dir)
    history_path = weights_path(config.name, config.arch, served_dir).with_suffix(".history.json")
    earlier = json.loads(history_path.read_text())["history"] if history_path.exists() else []
    print(f"[{config.name}] starting from {config.name}'s weights after {len(earlier)} epochs", flush=True)
    return model, earlier


@dataclass(frozen=True)
class Recipe:
    """How a student is distilled, beyond the spec: the command line's choices."""

    from_scratch: bool = False
    plain_crops: bool = False  # from scratch only: the plain crop instead of shades of grey
    correct_teacher: bool = False
    alpha: float = DISTIL["alpha"]
    epochs: int | None = None
    mild_views: bool = False  # views drawn with the from-scratch students' augmentation, not the teacher's

    @property
    def augmentation(self) -> str:
        return "mild" if self.mild_views else "strong"

    def reads_shades_of_grey(self, name: str, resume: bool) -> bool:
        """From scratch, as the recipe says; else the input the starting weights were trained on."""
        if self.from_scratch:
            return not self.plain_crops
        return reads_shades_of_grey(name, BUILD_DIR if resume else WEIGHTS_DIR)

    @property
    def tag(self) -> str:
        """The experiment's name suffix, e.g. ``distilled-scratch-plain-corrected`` (``-36epochs`` where overridden)."""
        alpha = f"-alpha{self.alpha:g}" if self.alpha != DISTIL["alpha"] else ""
        return (
            "distilled"
            + "-scratch" * self.from_scratch
            + "-plain" * self.plain_crops
            + "-corrected" * self.correct_teacher
            + "-mild" * self.mild_views
            + alpha
            + (f"-{self.epochs}epochs" if self.epochs else "")
        )


def distil_config(name: str, data_root: Path, from_scratch: bool = False, epochs: int | None = None) -> TrainConfig:
    """The run: ``DISTIL``'s size, epochs and learning rate for going on from trained weights; from scratch, the
    student's own (``STUDENTS``); ``epochs`` overrides either."""
    spec = STUDENTS[name] if from_scratch else DISTIL["students"][name]
    return TrainConfig.of(
        name,
        data_root / "ham10000",
        epochs=epochs or spec["epochs"],
        lr=spec["lr"],
        imgsz=spec["imgsz"],
        weights_dir=BUILD_DIR,
    )


def student_start(
    config: TrainConfig, from_scratch: bool = False, resume: bool = False, served_dir: Path = WEIGHTS_DIR
) -> tuple[torch.nn.Module, list[dict]]:
    """Fresh weights and no curves (``from_scratch``; the backbone from the served ``init_from`` model where the
    spec names one, as ``models.train`` starts it), the last candidate (``resume``) or the served student."""
    if from_scratch:
        model = build_model(config.arch, config.labels)
        source = config.spec.get("init_from")
        if source:
            load_served(model, source, served_dir)
        print(
            f"[{config.name}] starting from {f'the served {source} weights' if source else 'fresh weights'}", flush=True
        )
        return model, []
    return starting_model(config, BUILD_DIR if resume else served_dir)


def starting_file(config: TrainConfig, from_scratch: bool, resume: bool) -> Path | None:
    """The weights :func:`student_start` starts from (None: fresh weights)."""
    if from_scratch:
        source = config.spec.get("init_from")
        return served_file(source) if source else None
    return served_file(config.name, BUILD_DIR if resume else WEIGHTS_DIR)


def distil_one(
    name: str,
    cache: ViewCache,
    data_root: Path,
    seed: int = 0,
    resume: bool = False,
    shades_of_grey: bool = True,
    recipe: Recipe = Recipe(),
) -> Path:
    """Distil one student (``resume``: go on from the last distilled candidate in ``build/distil/``; the
    ``recipe``'s start, teacher correction and weight) on the cache's views, which are on shades of grey or the
    plain crop as ``shades_of_grey`` says."""
    config = distil_config(name, data_root, recipe.from_scratch, recipe.epochs)
    torch.manual_seed(seed)
    sets = named_sets(data_root)
    y_train = (
        cache.labels
        if config.labels == DIAGNOSIS_LABELS
        else label_indices(sets["ham_train"] + sets["pad_train"], config.labels)
    )
    val = sets["ham_val_fit"]  # the report half stays unseen until make evaluate
    pixels = Pixels(
        x_train=torch.empty(0),
        y_train=torch.from_numpy(y_train),
        x_val=torch.from_numpy(load_model_pixels(val, config.imgsz, shades_of_grey)),
        y_val=label_indices(val, config.labels),
    )
    model, earlier = student_start(config, recipe.from_scratch, resume)
    gen = torch.Generator().manual_seed(seed)
    run = {  # what makes two runs the same run (a checkpoint of another is not gone on from)
        **train_args(config, config.epochs),
        **asdict(recipe),
        "teacher": checkpoints.digest(TEACHER),
        "views": len(cache.teacher_logits),
        "fresh_views": cache.source is not None,
        "shades_of_grey": shades_of_grey,
        "resume": resume,
        "seed": seed,
        "start": checkpoints.digest(starting_file(config, recipe.from_scratch, resume)),
        "earlier_epochs": len(earlier),
    }
    checkpoint = BUILD_DIR / f"{config.out.stem}.ckpt"
    done = checkpoints.finished(checkpoint, run, config.epochs)
    if done is not None:  # its weights are written again from the checkpoint, in case the run stopped before
        model.load_state_dict(done["ema"])
        rows = done["history"]
    else:
        trainer = DistilTrainer(config, model, pixels, gen, cache, recipe.correct_teacher, recipe.alpha)
        rows = trainer.fit(checkpoint, run)
        model = copy.deepcopy(trainer.ema.module)
    history = [{**row, "stage": "distil"} for row in rows]
    extra = {
        "data": "HAM10000 train + PAD-UFES-20 train",
        **({"colour_constancy": "shades_of_grey"} if shades_of_grey else {}),
        "distilled_from": TEACHER.name,
        "distillation": {
            "T": DISTIL["T"],
            "epochs": len(history),
            "alpha": recipe.alpha,
            "views": len(cache.teacher_logits),
            "fresh_views": cache.source is not None,
            "start": "scratch" if recipe.from_scratch else "served",
            "init_from": config.spec.get("init_from") if recipe.from_scratch else None,
            "teacher_corrected": recipe.correct_teacher,
            "augmentation": cache.augmentation,
        },
    }
    return save(config, model.eval(), earlier, history, extra)


# The selection: a distilled student replaces the served one only if it scores higher on the fit sets by a margin,
# loses on neither, and does not lower the assessment (:func:`ships`).

SELECTION_SETS = ("ham_val_fit", "pad_val")
SELECTION_TOLERANCE = 0.01
# A smaller lead than this is no evidence: between the two halves of the HAM10000 validation lesions one model's mel
# recall alone moves by 0.1, so a student must lead the served one by more.
SELECTION_MARGIN = 0.01


def candidate_probabilities(role: str, path: Path, samples: list) -> np.ndarray:
    """The candidate's probabilities as it would be served: on the role's test-time views (``specs.VIEWS``)."""
    student = load_student(role, path)
    views = VIEWS[role]
    pixels = with_views(student.pixels(samples), views)
    probs = predict(student.model, torch.from_numpy(pixels), student.mean, student.std)
    return calibrate(mean_over_views(log_probs(probs), len(views)), 1.0)


def figures(probs: np.ndarray, samples: list, labels: tuple[str, ...]) -> dict[str, float]:
    y = label_indices(samples, labels)
    malignant = np.array([label in MALIGNANT or label == "malignant" for label in labels])
    is_malignant = malignant[y]
    return {
        "balanced_accuracy": round(balanced_accuracy(y, probs.argmax(1)), 4),
        "malignant_auc": round(auc(is_malignant, probs[:, malignant].sum(1)), 4),
    }


def fit_record(role: str, candidate: Path, data_root: Path = SHARED_DATA, side: str = "distilled") -> dict:
    """The served student's and the ``candidate``'s figures and score on the fit sets (the served one through the
    serving code, the candidate as it would be served); the candidate's under ``side``."""
    sets = named_sets(data_root)
    labels = STUDENTS[role]["labels"]
    record: dict = {"sets": list(SELECTION_SETS), "score": "mean over the sets of balanced accuracy and malignant AUC"}
    served = served_scores(MODELS_DIR, SELECTION_SETS)  # log-scores through the serving code, views included
    distilled = {name: candidate_probabilities(role, candidate, sets[name]) for name in SELECTION_SETS}
    for name, probs_of in (("served", lambda set_name: calibrate(served[set_name][role], 1.0)), (side, distilled.get)):
        by_set = {s: figures(probs_of(s), sets[s], labels) for s in SELECTION_SETS}
        score = float(np.mean([value for row in by_set.values() for value in row.values()]))
        record[name] = {**by_set, "score": round(score, 4)}
    log_prior = training_log_prior([sample.dx for sample in sets["ham_train"]])
    record["assessment"] = assessment_figures(role, served, distilled, side, log_prior)
    return record


def assessment_figures(role: str, served: dict, distilled: dict, side: str, log_prior: np.ndarray) -> dict:
    """The assessment's out-of-fold balanced accuracy on the fit sets (``models.fit``, every model calibrated and
    the combination refitted), with the served models and with the ``distilled`` probabilities in ``role``'s place."""
    models = json.loads((MODELS_DIR / "manifest.json").read_text())["models"]
    labels = {name: entry["labels"] for name, entry in models.items()}
    y = np.concatenate([served[name]["y"] for name in SELECTION_SETS])
    lesions = np.concatenate([served[name]["lesion"] for name in SELECTION_SETS])
    logits = {name: np.concatenate([served[s][name] for s in SELECTION_SETS]) for name in labels}
    record = {"measure": "out-of-fold balanced accuracy of the assessment refitted on the fit sets (models.fit)"}
    record["served"] = round(assessment_out_of_fold(logits, labels, y, log_prior, lesions), 4)
    logits[role] = log_probs(np.concatenate([distilled[name] for name in SELECTION_SETS]))
    record[side] = round(assessment_out_of_fold(logits, labels, y, log_prior, lesions), 4)
    return record


def ships(record: dict) -> bool:
    """The rule: the candidate's score is higher by more than ``SELECTION_MARGIN``; on neither fit set does its own
    score (the mean of that set's two figures) fall more than ``SELECTION_TOLERANCE`` below the served model's, so a
    small set cannot carry it; and the assessment's out-of-fold balanced accuracy falls no more than that either,
    since the assessment is what an app shows first (a student that only echoes the reference adds nothing to it)."""
    served, distilled = record["served"], record["distilled"]
    own = lambda side, name: float(np.mean(list(side[name].values())))
    kept = all(own(distilled, name) >= own(served, name) - SELECTION_TOLERANCE for name in record["sets"])
    assessment = record["assessment"]
    kept_assessment = assessment["distilled"] >= assessment["served"] - SELECTION_TOLERANCE
    return distilled["score"] > served["score"] + SELECTION_MARGIN and kept and kept_assessment


def select(role: str, candidate: Path, data_root: Path = SHARED_DATA, tag: str = "distilled") -> bool:
    """Score the served and the distilled student on the fit sets; ship the distilled one if it wins (:func:`ships`),
    else keep its curves as ``experiments/<role>-<arch>-<tag>.history.json``."""
    record = fit_record(role, candidate, data_root)
    record["rule"] = (
        f"a score higher by more than {SELECTION_MARGIN}, and neither a fit set's own score nor the assessment's "
        f"out-of-fold balanced accuracy lower by more than {SELECTION_TOLERANCE}"
    )
    record["shipped"] = ships(record)
    history_path = candidate.with_suffix(".history.json")
    history = {**json.loads(history_path.read_text()), "selection": record}
    if record["shipped"]:
        shutil.copyfile(candidate, WEIGHTS_DIR / candidate.name)
        target = WEIGHTS_DIR / history_path.name
    else:
        target = MODELS_DIR / "experiments" / history_path.name.replace(".history.json", f"-{tag}.history.json")
    target.write_text(json.dumps(history, indent=1) + "\n")
    print(f"[{role}] selection: {json.dumps(record)} -> {target}", flush=True)
    return record["shipped"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=[*STUDENTS, "all"], default="all")
    parser.add_argument("--views", type=int, default=DISTIL["views"])
    parser.add_argument("--seed", type=int, default=0, help="another seed caches other views")
    parser.add_argument(
        "--fresh-views", action="store_true", help="cache the teacher's logits only; draw the views again each epoch"
    )
    parser.add_argument("--resume", action="store_true", help="go on from the distilled candidates in build/distil/")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from fresh weights, for the student's from-scratch epochs and learning rate, on shades of grey",
    )
    parser.add_argument(
        "--plain-crops",
        action="store_true",
        help="with --from-scratch: the student reads the plain crop, not shades of grey",
    )
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument(
        "--alpha", type=float, default=DISTIL["alpha"], help="weight of the teacher's soft targets (0: labels only)"
    )
    parser.add_argument(
        "--correct-teacher",
        action="store_true",
        help="where the teacher's top class is not the label, swap their probabilities (knowledge adjustment)",
    )
    parser.add_argument(
        "--mild-views",
        action="store_true",
        help="draw the views with the from-scratch students' own augmentation (models.train), not the teacher's",
    )
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    if args.plain_crops and not args.from_scratch:
        parser.error("--plain-crops needs --from-scratch (otherwise a student reads what its weights were trained on)")
    recipe = Recipe(args.from_scratch, args.plain_crops, args.correct_teacher, args.alpha, args.epochs, args.mild_views)
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", os.cpu_count() or 1)))
    names = list(STUDENTS) if args.model == "all" else [args.model]
    sizes = sorted({DISTIL["students"][name]["imgsz"] for name in STUDENTS})
    for name in names:
        grey = recipe.reads_shades_of_grey(name, args.resume)
        cache = load_views(sizes, args.views, args.data_root, args.seed, grey, args.fresh_views, recipe.augmentation)
        candidate = distil_one(name, cache, args.data_root, args.seed, args.resume, grey, recipe)
        select(name, candidate, args.data_root, recipe.tag)


if __name__ == "__main__":
    main()
