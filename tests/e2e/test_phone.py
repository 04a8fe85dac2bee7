"""Photos as phones send them, through the real local stack: accepted, analysed, and stored without metadata, in
sRGB, as their primary image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from devstack.sample import synthetic_lesion
from shared.analysis.imaging import display_p3_icc
from tests.phone_files import (
    IPHONE_JPEG,
    NO_IPHONE,
    metadata_segments,
    mpo,
    private_jpeg,
    ultra_hdr,
)

TERMINAL = {"done", "rejected"}


def stored(api, job: dict) -> bytes:
    return api.bucket.blob(job["image"]["path"]).download_as_bytes()


def upload_and_wait(api, uid: str, data: bytes, content_type: str = "image/jpeg") -> dict:
    reply = api.upload(uid, data, content_type=content_type)
    assert reply.status_code == 202, reply.text
    job = api.wait(uid, reply.json()["jobId"], timeout=120)
    assert job["status"] in TERMINAL, job
    return job


def test_real_iphone_photo_is_accepted_and_stored_as_its_srgb_primary_image(api):
    if not IPHONE_JPEG.is_file():
        pytest.skip(NO_IPHONE)
    job = upload_and_wait(api, "iphone", IPHONE_JPEG.read_bytes())
    data = stored(api, job)
    assert metadata_segments(data) == []  # no EXIF, no MPF index, no ICC profile: the pixels are sRGB
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and getattr(image, "n_frames", 1) == 1 and image.mode == "RGB"
    assert image.size == (job["image"]["width"], job["image"]["height"]) == (1528, 1360)


@pytest.mark.parametrize("kind", ["mpo", "ultra hdr"])
def test_multi_picture_jpeg_is_analysed_as_its_primary_image(api, kind):
    primary = synthetic_lesion(600, 450, seed=21)
    data = mpo(primary, primary.convert("L").resize((150, 112))) if kind == "mpo" else ultra_hdr(primary)
    job = upload_and_wait(api, "mpo", data)
    assert job["status"] == "done" and (job["image"]["width"], job["image"]["height"]) == (600, 450)
    kept = np.asarray(Image.open(io.BytesIO(stored(api, job))), np.float32)
    assert np.abs(kept - np.asarray(primary, np.float32)).mean() < 4


def test_photo_with_private_metadata_is_stored_without_any(api):
    job = upload_and_wait(api, "jane", private_jpeg(synthetic_lesion(600, 450, seed=22)))
    data = stored(api, job)
    assert metadata_segments(data) == [] and b"Jane Doe" not in data and b"PhoneMaker" not in data


def test_display_p3_photo_is_stored_in_srgb(api):
    skin = Image.new("RGB", (256, 192), (200, 100, 80))
    buffer = io.BytesIO()
    skin.save(buffer, format="PNG", icc_profile=display_p3_icc())
    job = upload_and_wait(api, "p3", buffer.getvalue(), "image/png")
    red, green, blue = np.asarray(Image.open(io.BytesIO(stored(api, job))), np.float32).reshape(-1, 3).mean(axis=0)
    assert red > 208 and green < 96 and blue < 76  # sRGB ~(215, 93, 72), not the file's (200, 100, 80)


@pytest.mark.slow
def test_forty_megapixel_sixteen_bit_png_is_stored_as_a_grey_jpeg(api):
    """~100 KB that decode to 40 MP of 16-bit grey: accepted, reduced to 8-bit a strip at a time, stored grey."""
    side = 6300
    ramp = np.tile(np.arange(side, dtype=np.uint16)[None, :] * 10, (side, 1)).astype("<u2")
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG", compress_level=9)
    del ramp
    assert len(buffer.getvalue()) < 200_000
    job = upload_and_wait(api, "sixteen", buffer.getvalue(), "image/png")
    kept = Image.open(io.BytesIO(stored(api, job)))
    assert kept.mode == "L" and kept.size == (side, side) == (job["image"]["width"], job["image"]["height"])
    assert kept.getpixel((side - 1, 0)) > 200 and kept.getpixel((0, 0)) < 10  # scaled from 16 bits, not clipped
