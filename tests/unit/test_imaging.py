"""Decoding and validation of what phones and browsers send, and refusal of everything else."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from devstack.sample import synthetic_lesion
from shared.analysis.imaging import decode, encode_jpeg, sniff
from shared.errors import ServiceError
from tests.conftest import encoded, jpeg_bytes

LESION = synthetic_lesion(320, 240, seed=3)


def code_of(data: bytes, declared: str | None = None, **limits) -> tuple[int, str]:
    with pytest.raises(ServiceError) as caught:
        decode(data, declared, **limits)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    "fmt,declared",
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("JPEG", None),
        ("PNG", "application/octet-stream"),
    ],
)
def test_common_formats_decode_to_rgb(fmt, declared):
    photo = decode(encoded(LESION, fmt), declared)
    assert photo.image.mode == "RGB" and (photo.width, photo.height) == (320, 240)


def test_heic_decodes():
    import pillow_heif

    heif = pillow_heif.from_pillow(LESION)
    buffer = io.BytesIO()
    heif.save(buffer, quality=90)
    photo = decode(buffer.getvalue(), "image/heic")
    assert photo.format == "heif" and photo.image.size == (320, 240)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    photo = decode(jpeg_bytes(LESION, exif=exif.tobytes()), "image/jpeg")
    assert photo.image.size == (240, 320)


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "RGBA", "LA", "I;16"])
def test_odd_modes_become_rgb(mode):
    if mode == "I;16":
        source = Image.fromarray((np.asarray(LESION.convert("L"), np.uint16) * 257).astype("<u2"))
    else:
        source = LESION.convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    photo = decode(encoded(source, fmt))
    assert photo.image.mode == "RGB" and photo.image.size == (320, 240)
    assert 20 < np.asarray(photo.image).mean() < 235


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    assert np.asarray(decode(encoded(rgba, "PNG")).image).min() == 255


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: the bomb must be refused from its header alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding():
    assert code_of(png_header_only(20000, 20000)) == (422, "image_too_large")


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"", (400, "missing_image")),
        (b"\x00\x01garbage" * 50, (400, "invalid_image")),
        (b"%PDF-1.7\n...", (415, "unsupported_media_type")),
        (b"PK\x03\x04rest-of-zip", (415, "unsupported_media_type")),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', (415, "unsupported_media_type")),
        (b"<!DOCTYPE html><html><body>hi</body></html>", (415, "unsupported_media_type")),
        (b'{"image": "not really"}', (415, "unsupported_media_type")),
    ],
)
def test_non_images_are_refused(data, expected):
    assert code_of(data) == expected


def test_truncated_jpeg_is_invalid():
    data = jpeg_bytes(LESION)
    assert code_of(data[: len(data) // 2], "image/jpeg") == (400, "invalid_image")


def test_declared_type_must_match_the_bytes():
    assert code_of(encoded(LESION, "PNG"), "image/jpeg") == (415, "unsupported_media_type")
    assert code_of(jpeg_bytes(LESION), "text/html") == (415, "unsupported_media_type")


def test_animated_gif_and_animated_png_are_refused():
    frames = [LESION.convert("P"), LESION.rotate(90).convert("P")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert code_of(gif) == (415, "unsupported_media_type")
    apng = encoded(LESION, "PNG", save_all=True, append_images=[LESION.rotate(90)])
    assert code_of(apng) == (415, "unsupported_media_type")


def test_size_limits():
    assert code_of(encoded(Image.new("RGB", (1, 1)), "PNG")) == (422, "image_too_small")
    assert code_of(encoded(Image.new("RGB", (200, 63)), "PNG")) == (422, "image_too_small")
    assert decode(encoded(Image.new("RGB", (64, 64)), "PNG")).width == 64


def test_stored_jpeg_has_no_exif_location():
    exif = Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 24.0)}  # GPS IFD latitude
    exif[0x010F] = "PhoneMaker"
    photo = decode(jpeg_bytes(LESION, exif=exif.tobytes()))
    stored = encode_jpeg(photo.image)
    assert not Image.open(io.BytesIO(stored)).getexif()
    assert b"Exif" not in stored[:200]


def test_sniff_recognises_formats_from_bytes():
    assert sniff(jpeg_bytes(LESION)) == "jpeg" and sniff(encoded(LESION, "WEBP")) == "webp"
    assert sniff(b"GIF89a....") == "gif" and sniff(b"<!DOCTYPE html><html>") == "text"


def test_reduced_decode_keeps_the_photos_own_size():
    big = synthetic_lesion(1200, 900, seed=5)
    photo = decode(jpeg_bytes(big), reduce_to=128)
    assert photo.image.size == (300, 225)  # 1/4 scale keeps both sides >= 128; 1/8 would not
    assert (photo.width, photo.height) == (1200, 900)
    full = decode(jpeg_bytes(big))
    reduced_then_resized = np.asarray(photo.image.resize((150, 112)), np.float32)
    assert np.abs(reduced_then_resized - np.asarray(full.image.resize((150, 112)), np.float32)).mean() < 3


def test_reduced_decode_with_exif_rotation_and_other_formats():
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = decode(jpeg_bytes(synthetic_lesion(1200, 900, seed=5), exif=exif.tobytes()), reduce_to=128)
    assert photo.image.size == (225, 300) and (photo.width, photo.height) == (900, 1200)
    png = decode(encoded(synthetic_lesion(1200, 900, seed=5), "PNG"), reduce_to=128)
    assert png.image.size == (1200, 900)  # only JPEG decodes at a reduced scale
    small = decode(jpeg_bytes(synthetic_lesion(200, 150, seed=5)), reduce_to=128)
    assert small.image.size == (200, 150)


def test_minimum_size_is_judged_on_the_photo_not_the_reduced_decode():
    assert decode(jpeg_bytes(Image.new("RGB", (1024, 64), "white")), reduce_to=32).height == 64
    assert code_of(jpeg_bytes(Image.new("RGB", (1024, 63), "white")), reduce_to=8) == (422, "image_too_small")
