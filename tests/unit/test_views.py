"""Test-time views: the batch under each view, the mean over them, the manifest's check, and served models that
give a photo and its mirror image the same answer."""

import json

import numpy as np
import pytest

from devstack.sample import synthetic_lesion
from models.specs import VIEWS as SERVED_VIEWS
from shared.analysis.classifiers import ROLES, ModelError, load_classifiers, load_manifest
from shared.analysis.preprocess import VIEWS, mean_over_views, resize_center_crop, to_tensor, with_views
from tests.conftest import REPO

MODELS = REPO / "models"
BATCH = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)


def test_views_are_the_symmetries_of_each_crop_in_turn():
    stacked = with_views(BATCH, ("identity", "hflip", "rot180", "transpose"))
    assert stacked.shape == (8, 3, 3, 3) and stacked.flags.c_contiguous
    assert np.array_equal(stacked[:2], BATCH)
    assert np.array_equal(stacked[2], np.fliplr(BATCH[0])) and np.array_equal(stacked[3], np.fliplr(BATCH[1]))
    assert np.array_equal(stacked[4], np.rot90(BATCH[0], 2))
    assert np.array_equal(stacked[7], BATCH[1].transpose(1, 0, 2))
    assert with_views(BATCH, ("identity",)) is BATCH


def test_the_mean_over_views_is_taken_per_image():
    scores = np.array([[1.0, 0.0], [5.0, 2.0], [3.0, 2.0], [7.0, 4.0]])  # view-major: 2 views x 2 images
    assert np.array_equal(mean_over_views(scores, 2), [[2.0, 1.0], [6.0, 3.0]])
    assert mean_over_views(scores, 1) is scores


@pytest.mark.parametrize("views", [["hflip"], ["identity", "sideways"], []])
def test_a_manifest_whose_views_do_not_start_with_the_identity_or_are_unknown_is_refused(tmp_path, views):
    manifest = json.loads((MODELS / "manifest.json").read_text())
    manifest["models"]["binary"]["input"]["views"] = views
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="views"):
        load_manifest(tmp_path)


def test_the_manifest_serves_the_views_the_specs_chose():
    entries = load_manifest(MODELS)
    assert {role: entries[role].views for role in ROLES} == SERVED_VIEWS


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(MODELS, "onnx", 1)


@pytest.mark.parametrize("role", [role for role in ROLES if len(SERVED_VIEWS[role]) > 1])
def test_a_model_served_on_a_view_answers_a_crop_and_its_view_alike(classifiers, role):
    classifier = classifiers[role]
    crop = resize_center_crop(synthetic_lesion(seed=2), classifier.entry.size)[None]
    flipped = VIEWS[classifier.entry.views[1]](crop)
    assert not np.array_equal(crop, flipped)
    (scores, gate), (flipped_scores, _) = classifier.run(crop), classifier.run(flipped)
    assert np.allclose(scores, flipped_scores, atol=1e-4)
    if role == "reference":  # the gate reads the identity view, as it was fitted
        batch = to_tensor(crop, classifier.entry.mean, classifier.entry.std)
        alone = classifier.session.run(None, {classifier.input_name: batch})[1]
        assert np.allclose(gate, alone.reshape(-1), atol=1e-5)
