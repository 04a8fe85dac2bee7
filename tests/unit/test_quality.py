"""The quality gate on generated photos: sharp passes, blurred, dark and overexposed are refused with advice."""

from PIL import Image, ImageEnhance

from devstack.sample import synthetic_lesion
from shared import config
from shared.analysis import quality

LIMITS = quality.Thresholds(
    config.load({}).BLUR_THRESHOLD, config.load({}).DARK_THRESHOLD, config.load({}).BRIGHT_THRESHOLD
)


def test_sharp_photo_passes_and_is_reported():
    measured = quality.measure(synthetic_lesion(seed=2))
    assert quality.rejection(measured, LIMITS) is None
    report = quality.report(measured, LIMITS)
    assert report["ok"] is True and report["blurThreshold"] == LIMITS.blur and report["width"] == 600


def test_blurred_photo_is_refused_with_advice():
    rejection = quality.rejection(quality.measure(synthetic_lesion(seed=2, blur=6)), LIMITS)
    assert rejection["code"] == "too_blurry" and "again" in rejection["message"]


def test_dark_and_overexposed_photos_are_refused():
    photo = synthetic_lesion(seed=2)
    dark = ImageEnhance.Brightness(photo).enhance(0.08)
    bright = Image.blend(photo, Image.new("RGB", photo.size, (255, 255, 255)), 0.93)
    assert quality.rejection(quality.measure(dark), LIMITS)["code"] == "too_dark"
    assert quality.rejection(quality.measure(bright), LIMITS)["code"] == "overexposed"


def test_blur_score_does_not_depend_on_resolution_much():
    small = quality.measure(synthetic_lesion(600, 450, seed=4)).blur_score
    large = quality.measure(synthetic_lesion(600, 450, seed=4).resize((1200, 900))).blur_score
    assert abs(small - large) / small < 0.2
