"""Both runtimes (ONNX Runtime and torch) give the same scores for the three card models, within 1e-3 in
probability (the reference ships as ONNX only and runs on ONNX Runtime under both settings)."""

import numpy as np
import pytest
from PIL import Image

from devstack.sample import synthetic_lesion
from shared.analysis.classifiers import TORCH_ROLES, load_classifiers
from shared.analysis.preprocess import resize_center_crop
from tests.conftest import REPO

MODELS = REPO / "models"


@pytest.fixture(scope="module")
def runtimes():
    return load_classifiers(MODELS, "onnx", 2), load_classifiers(MODELS, "torch", 2)


def assert_parity(runtimes, images: list[Image.Image]) -> None:
    onnx, torch = runtimes
    for role in TORCH_ROLES:
        size = onnx[role].entry.size
        pixels = np.stack([resize_center_crop(image, size) for image in images])
        difference = np.abs(np.exp(onnx[role].run(pixels)[0]) - np.exp(torch[role].run(pixels)[0])).max()
        assert difference <= 1e-3, (role, difference)


def test_parity_on_generated_images(runtimes):
    assert_parity(runtimes, [synthetic_lesion(seed=seed) for seed in range(8)])


def test_parity_on_real_phone_sized_photos(runtimes, phone_photos):
    images = []
    for path in phone_photos[:16]:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    assert_parity(runtimes, images)
