"""The blur threshold holds on real dermoscopic images, decoded as the infer function decodes them: ≤ 1 % of the
originals refused, ≥ 95 % of copies blurred at full size and sent as JPEG refused."""

import numpy as np
import pytest
from PIL import ImageFilter

from shared import config
from shared.analysis import quality
from shared.analysis.classifiers import load_manifest
from shared.analysis.imaging import decode, encode_jpeg
from tests.conftest import NO_DATA, REPO, SHARED_DATA

DECODE_SIDE = max(entry.size for entry in load_manifest(REPO / "models").values())  # as the pipeline decodes


def refused_shares(folder: str, step: int, sigma: float) -> tuple[float, float]:
    images = sorted((SHARED_DATA / folder / "images").glob("*.jpg"))[::step]
    if not images:
        pytest.skip(NO_DATA)
    threshold = config.load({}).BLUR_THRESHOLD
    sharp, blurred = [], []
    for path in images:
        data = path.read_bytes()
        sharp.append(quality.measure(decode(data, reduce_to=DECODE_SIDE).image).blur_score)
        copy = encode_jpeg(decode(data).image.filter(ImageFilter.GaussianBlur(sigma)))
        blurred.append(quality.measure(decode(copy, reduce_to=DECODE_SIDE).image).blur_score)
    return float(np.mean(np.array(sharp) < threshold)), float(np.mean(np.array(blurred) < threshold))


def test_blur_threshold_on_a_sample_of_ham10000():
    sharp_refused, blurred_refused = refused_shares("ham10000", 8, sigma=2)  # about 1,000 of the 8,514
    assert sharp_refused <= 0.01 and blurred_refused >= 0.95


def test_blur_threshold_on_the_phone_sized_images():
    sharp_refused, blurred_refused = refused_shares("ham10000-600x450", 1, sigma=6)  # σ 6 at 600 px ≈ σ 2 at 200
    assert sharp_refused <= 0.01 and blurred_refused >= 0.95
