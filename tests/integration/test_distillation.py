"""Distillation, run for real on a few images: the view cache (a tiny ONNX teacher scores augmented views, stored
at every student size) and the distillation trainer (a YOLO11 student learns the teacher's answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import distil
from models.train import Pixels, TrainConfig
from shared.labels import BINARY_LABELS, DIAGNOSIS_LABELS, MALIGNANT

SIZE = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MeanColourTeacher(torch.nn.Module):
    """A teacher whose logits are a fixed linear map of the image's mean colour: easy to learn, clearly defined."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, len(DIAGNOSIS_LABELS))
        with torch.no_grad():
            self.linear.weight.copy_(torch.linspace(-3, 3, 21).view(7, 3))
            self.linear.bias.zero_()

    def forward(self, images):
        return self.linear(images.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.onnx"
    torch.onnx.export(
        MeanColourTeacher().eval(),
        torch.zeros(1, 3, 48, 48),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return path


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 226, (24, 1, 1, 3))
    pixels = np.clip(colours + rng.normal(0, 20, (24, 48, 48, 3)), 0, 255).astype(np.uint8)
    return torch.from_numpy(pixels)


def test_views_are_scored_by_the_teacher_and_stored_at_every_student_size(teacher, images):
    views = distil.make_views(images, [SIZE, 24], 2, seed=0, teacher=teacher, batch=8)
    assert views["pixels_32"].shape == (2, 24, SIZE, SIZE, 3) and views["pixels_24"].shape == (2, 24, 24, 24, 3)
    assert views["logits"].shape == (2, 24, len(DIAGNOSIS_LABELS))
    assert not np.array_equal(views["pixels_32"][0], views["pixels_32"][1])  # two different augmentations
    again = distil.make_views(images, [SIZE, 24], 2, seed=0, teacher=teacher, batch=8)
    assert all(np.array_equal(views[key], again[key]) for key in views)  # seeded: the cache is reproducible
    # the stored view is the teacher's view scaled down: its mean colour gives the same logits
    mean = torch.from_numpy(views["pixels_32"][1]).float().div(255).mean(dim=(1, 2))
    normalised = (mean - torch.tensor(distil.REFERENCE["mean"])) / torch.tensor(distil.REFERENCE["std"])
    recomputed = MeanColourTeacher()(normalised[:, :, None, None].expand(-1, -1, 2, 2)).detach().numpy()
    assert np.abs(recomputed - views["logits"][1]).max() < 0.1


def test_a_student_reading_other_inputs_gets_the_same_augmentations_and_the_teachers_logits(teacher, images):
    # the teacher reads ``images`` (shades of grey in training), the student another preparation of them
    other = 255 - images
    mixed = distil.make_views(images, [SIZE], 2, seed=0, teacher=teacher, batch=8, student_x=other)
    on_teacher_input = distil.make_views(images, [SIZE], 2, seed=0, teacher=teacher, batch=8)
    on_student_input = distil.make_views(other, [SIZE], 2, seed=0, teacher=teacher, batch=8)
    assert np.array_equal(mixed["logits"], on_teacher_input["logits"])
    assert np.array_equal(mixed["pixels_32"], on_student_input["pixels_32"])  # the same draws, on the other input
    assert not np.array_equal(mixed["pixels_32"], on_teacher_input["pixels_32"])


def test_fresh_views_are_drawn_again_from_the_seed_as_the_cache_would_have_stored_them(teacher, images):
    other = 255 - images  # the student's preparation of the same images
    stored = distil.make_views(images, [SIZE], 3, seed=5, teacher=teacher, student_x=other)
    logits_only = distil.make_views(images, [], 3, seed=5, teacher=teacher)
    assert set(logits_only) == {"logits"} and np.array_equal(logits_only["logits"], stored["logits"])
    fresh = distil.ViewCache({}, logits_only["logits"], stored["logits"][0].argmax(1), source=other, seed=5)
    for view in range(3):
        assert np.array_equal(fresh.view(SIZE, view), stored["pixels_32"][view])
    assert np.array_equal(
        distil.student_views(other, 1, 5, [SIZE], batch=8)[SIZE],
        distil.make_views(images, [SIZE], 2, seed=5, teacher=teacher, batch=8, student_x=other)["pixels_32"][1],
    )


def test_a_student_keeps_the_input_its_starting_weights_were_trained_on(tmp_path):
    import json

    def record(name: str, arch: str, args: dict) -> None:
        path = distil.weights_path(name, arch, tmp_path).with_suffix(".history.json")
        path.write_text(json.dumps({"train_args": args, "history": []}))

    record("binary", distil.STUDENTS["binary"]["arch"], {"colour_constancy": "shades_of_grey"})
    record("check", distil.STUDENTS["check"]["arch"], {"imgsz": 80})
    assert distil.reads_shades_of_grey("binary", tmp_path)
    assert not distil.reads_shades_of_grey("check", tmp_path)
    assert not distil.reads_shades_of_grey("diagnosis", tmp_path)  # no record: trained from scratch, plain crops


def test_a_student_distilled_from_scratch_starts_from_fresh_weights_on_its_own_schedule(tmp_path):
    scratch = distil.distil_config("diagnosis", tmp_path, from_scratch=True)
    going_on = distil.distil_config("diagnosis", tmp_path)
    own, continued = distil.STUDENTS["diagnosis"], distil.DISTIL["students"]["diagnosis"]
    assert (scratch.epochs, scratch.lr, scratch.imgsz) == (own["epochs"], own["lr"], own["imgsz"])
    assert (going_on.epochs, going_on.lr, going_on.imgsz) == (continued["epochs"], continued["lr"], continued["imgsz"])
    assert distil.distil_config("diagnosis", tmp_path, from_scratch=True, epochs=3).epochs == 3
    served, served_curves = distil.student_start(going_on)  # the committed ONNX weights and their curves
    fresh, fresh_curves = distil.student_start(scratch, from_scratch=True)
    assert fresh_curves == [] and len(served_curves) >= own["epochs"]
    served_weights, fresh_weights = served.state_dict(), fresh.state_dict()
    convs = [key for key, value in served_weights.items() if key.endswith("conv.weight") and value.dim() == 4]
    assert convs and all(not torch.equal(served_weights[key], fresh_weights[key]) for key in convs)


def test_soft_targets_sum_the_teachers_malignant_classes_for_the_binary_student():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.5, 3.0, 0.0]])
    diagnosis = distil.soft_targets(logits, DIAGNOSIS_LABELS, 2.0)
    assert torch.allclose(diagnosis, torch.softmax(logits / 2.0, 1))
    binary = distil.soft_targets(logits, BINARY_LABELS, 2.0)
    malignant = sum(diagnosis[0, i] for i, label in enumerate(DIAGNOSIS_LABELS) if label in MALIGNANT)
    assert torch.allclose(binary, torch.tensor([[1 - malignant, malignant]]))


def test_corrected_targets_swap_a_wrong_top_class_with_the_label_and_keep_the_rest():
    targets = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3]])
    y = torch.tensor([1, 1, 2])  # the first and the last are wrong
    fixed = distil.corrected(targets, y)
    assert torch.equal(fixed, torch.tensor([[0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.3, 0.2, 0.5]]))
    assert torch.equal(fixed.argmax(1), y) and torch.allclose(fixed.sum(1), targets.sum(1))


def test_a_trainer_with_a_corrected_teacher_has_right_top_classes_on_every_view(teacher, images, tmp_path):
    views = distil.make_views(images, [SIZE], 2, seed=0, teacher=teacher, batch=8)
    labels = np.roll(views["logits"][0].argmax(1), 1)  # labels the teacher mostly gets wrong
    cache = distil.ViewCache({SIZE: views["pixels_32"]}, views["logits"], labels)
    config = TrainConfig.of("diagnosis", tmp_path, epochs=1, imgsz=SIZE, batch=8, weights_dir=tmp_path)
    pixels = Pixels(torch.empty(0), torch.from_numpy(labels), torch.from_numpy(views["pixels_32"][0]), labels)

    def trainer(correct: bool) -> distil.DistilTrainer:
        model = distil.build_model(config.arch, config.labels)
        return distil.DistilTrainer(config, model, pixels, torch.Generator().manual_seed(0), cache, correct)

    plain, fixed = trainer(False).targets, trainer(True).targets
    assert not torch.equal(plain.argmax(2), torch.from_numpy(labels).expand(2, -1))
    assert torch.equal(fixed.argmax(2), torch.from_numpy(labels).expand(2, -1))
    assert torch.equal(fixed.sort(2).values, plain.sort(2).values)  # the same probabilities, two of them swapped


def test_a_trainer_at_alpha_0_learns_from_the_labels_alone(teacher, images, tmp_path):
    views = distil.make_views(images, [SIZE], 1, seed=0, teacher=teacher, batch=8)
    labels = views["logits"][0].argmax(1)
    cache = distil.ViewCache({SIZE: views["pixels_32"]}, views["logits"], labels)
    config = TrainConfig.of("diagnosis", tmp_path, epochs=1, imgsz=SIZE, batch=8, weights_dir=tmp_path)
    pixels = Pixels(torch.empty(0), torch.from_numpy(labels), torch.from_numpy(views["pixels_32"][0]), labels)
    model = distil.build_model(config.arch, config.labels).eval()  # eval: the same logits on every call
    batch = torch.arange(8)
    losses = {}
    for alpha in (0.0, distil.DISTIL["alpha"]):
        trainer = distil.DistilTrainer(config, model, pixels, torch.Generator().manual_seed(0), cache, alpha=alpha)
        trainer.view_pixels = torch.from_numpy(cache.view(SIZE, 0))
        losses[alpha] = trainer.batch_loss(batch)
    x = torch.from_numpy(views["pixels_32"][0][:8]).permute(0, 3, 1, 2).float() / 255.0
    logits = distil.logits_of(model, x)
    labels_only = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[:8]), label_smoothing=0.05)
    assert torch.isclose(losses[0.0], labels_only) and not torch.isclose(losses[distil.DISTIL["alpha"]], labels_only)


def test_the_loss_is_the_labels_cross_entropy_at_alpha_0_and_least_where_the_student_copies_the_teacher():
    teacher = torch.tensor([[1.0, -1.0, 0.5]])
    y = torch.tensor([0])
    targets = torch.softmax(teacher / 2.0, 1)
    ce = torch.nn.functional.cross_entropy(teacher, y, label_smoothing=0.05)
    assert torch.isclose(distil.distillation_loss(teacher, targets, y, 2.0, 0.0), ce)
    assert distil.distillation_loss(teacher, targets, y, 2.0, 1.0).abs() < 1e-6
    assert distil.distillation_loss(-teacher, targets, y, 2.0, 1.0) > 0.1


def test_a_student_distilled_on_the_cached_views_learns_the_teachers_answers(teacher, images, tmp_path):
    views = distil.make_views(images, [SIZE], 2, seed=0, teacher=teacher, batch=8)
    cache = distil.ViewCache({SIZE: views["pixels_32"]}, views["logits"], views["logits"][0].argmax(1))
    config = TrainConfig.of("diagnosis", tmp_path, epochs=8, lr=3e-3, imgsz=SIZE, batch=8, weights_dir=tmp_path)
    pixels = Pixels(
        x_train=torch.empty(0),
        y_train=torch.from_numpy(cache.labels),
        x_val=torch.from_numpy(views["pixels_32"][0]),
        y_val=cache.labels,
    )
    torch.manual_seed(0)
    model = distil.build_model(config.arch, config.labels)
    trainer = distil.DistilTrainer(config, model, pixels, torch.Generator().manual_seed(0), cache)

    def disagreement() -> float:
        """KL from the teacher on view 0, the student normalising with the batch's statistics (a few steps leave
        batch-norm running statistics near their start)."""
        x = torch.from_numpy(views["pixels_32"][0]).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            student = torch.log_softmax(distil.logits_of(trainer.model.train(), x) / 2.0, 1)
        return float(torch.nn.functional.kl_div(student, trainer.targets[0], reduction="batchmean"))

    before = disagreement()
    history = trainer.fit()
    after = disagreement()
    print(f"KL before {before:.3f}, after {after:.3f}")
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert after < 0.5 * before


def test_the_selection_figures_read_malignant_from_either_label_set():
    from models.data import Sample

    samples = [Sample(None, str(i), str(i), dx, "val") for i, dx in enumerate(["nv", "mel", "bcc", "bkl"])]
    diagnosis = np.zeros((4, 7))
    for row, label in enumerate(["nv", "mel", "bcc", "mel"]):  # the last, a bkl, is called mel
        diagnosis[row, DIAGNOSIS_LABELS.index(label)] = 1.0
    assert distil.figures(diagnosis, samples, DIAGNOSIS_LABELS) == {"balanced_accuracy": 0.75, "malignant_auc": 0.75}
    binary = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    assert distil.figures(binary, samples, BINARY_LABELS) == {"balanced_accuracy": 1.0, "malignant_auc": 1.0}


def fit_sides(ham: tuple[float, float], pad: tuple[float, float]) -> dict:
    by_set = {
        "ham_val_fit": {"balanced_accuracy": ham[0], "malignant_auc": ham[1]},
        "pad_val": {"balanced_accuracy": pad[0], "malignant_auc": pad[1]},
    }
    return {**by_set, "score": float(np.mean([*ham, *pad]))}


def test_a_student_ships_only_if_it_scores_higher_by_the_margin_and_loses_on_neither_fit_set():
    served = fit_sides((0.6356, 0.8973), (0.3387, 0.8047))
    assessment = {"served": 0.716, "distilled": 0.716}
    record = lambda distilled: {
        "sets": list(distil.SELECTION_SETS),
        "served": served,
        "distilled": distilled,
        "assessment": assessment,
    }
    # the withheld plain-crop student: a higher mean carried by the 60 PAD-UFES-20 photos while HAM10000 lost
    assert not distil.ships(record(fit_sides((0.5614, 0.88), (0.4151, 0.827))))
    assert distil.ships(record(fit_sides((0.670, 0.910), (0.339, 0.800))))  # within the tolerance on PAD-UFES-20
    assert not distil.ships(record(served))  # a tie is not a win
    assert not distil.ships(record(fit_sides((0.650, 0.900), (0.339, 0.800))))  # a lead of 0.003 is not either
    assert not distil.ships(record(fit_sides((0.700, 0.950), (0.300, 0.780))))  # PAD-UFES-20 falls by 0.032


def test_a_student_that_lowers_the_assessment_does_not_ship():
    served = fit_sides((0.6356, 0.8973), (0.3387, 0.8047))
    better = fit_sides((0.6439, 0.9002), (0.3851, 0.8471))  # round 8's distilled diagnosis model
    record = lambda served_assessment, distilled_assessment: {
        "sets": list(distil.SELECTION_SETS),
        "served": served,
        "distilled": better,
        "assessment": {"served": served_assessment, "distilled": distilled_assessment},
    }
    assert not distil.ships(record(0.716, 0.694))  # its own figures rose, the assessment's fell by 0.022
    assert distil.ships(record(0.716, 0.708))  # within the tolerance
    assert distil.ships(record(0.694, 0.716))


def test_mild_views_draw_the_students_own_augmentation_for_teacher_and_student(teacher, images):
    from models.train import augment as students_augmentation

    mild = distil.make_views(images, [SIZE], 2, seed=3, teacher=teacher, augmentation="mild")
    strong = distil.make_views(images, [SIZE], 2, seed=3, teacher=teacher)
    assert not np.array_equal(mild["pixels_32"], strong["pixels_32"])
    expected = students_augmentation(images.permute(0, 3, 1, 2).float() / 255.0, distil.view_generator(3, 1))
    assert np.array_equal(mild["pixels_32"][1], distil.to_size(expected, SIZE))
    fresh = distil.ViewCache(
        {}, mild["logits"], mild["logits"][0].argmax(1), source=images, seed=3, augmentation="mild"
    )
    assert np.array_equal(fresh.view(SIZE, 1), mild["pixels_32"][1])
    assert distil.Recipe(from_scratch=True, plain_crops=True, mild_views=True).tag == "distilled-scratch-plain-mild"
    assert distil.Recipe(from_scratch=True, epochs=36).tag == "distilled-scratch-36epochs"


def test_a_binary_student_from_scratch_starts_from_the_served_diagnosis_backbone_as_training_does(tmp_path):
    config = distil.distil_config("binary", tmp_path, from_scratch=True)
    binary, curves = distil.student_start(config, from_scratch=True)
    diagnosis, _ = distil.student_start(distil.distil_config("diagnosis", tmp_path))  # the served diagnosis model
    binary_weights, diagnosis_weights = binary.state_dict(), diagnosis.state_dict()
    shared = [k for k, v in binary_weights.items() if k in diagnosis_weights and v.shape == diagnosis_weights[k].shape]
    heads = [k for k in binary_weights if k not in shared]
    assert curves == [] and heads and len(shared) > 10 * len(heads)
    assert all(torch.equal(binary_weights[k], diagnosis_weights[k]) for k in shared)
