"""The blur threshold holds on real dermoscopic images: ≤ 1 % of originals refused, ≥ 95 % of blurred copies."""

import numpy as np
from PIL import Image, ImageFilter
import pytest

from shared import config, quality
from tests.conftest import NO_DATA, SHARED_DATA


def test_blur_threshold_on_a_sample_of_ham10000():
    images = sorted((SHARED_DATA / "ham10000" / "images").glob("*.jpg"))[::8]  # about 1,000 of the 8,514
    if not images:
        pytest.skip(NO_DATA)
    limits = config.load({})
    sharp, blurred = [], []
    for path in images:
        with Image.open(path) as image:
            image = image.convert("RGB")
            sharp.append(quality.measure(image).blur_score)
            blurred.append(quality.measure(image.filter(ImageFilter.GaussianBlur(2))).blur_score)
    assert np.mean(np.array(sharp) < limits.BLUR_THRESHOLD) <= 0.01
    assert np.mean(np.array(blurred) < limits.BLUR_THRESHOLD) >= 0.95
