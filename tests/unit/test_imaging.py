"""Decoding and validation of what phones and browsers send, and refusal of everything else."""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from devstack.sample import synthetic_lesion
from shared.analysis.imaging import decode, display_p3_icc, encode_jpeg, probe, sniff
from shared.errors import ServiceError
from tests.conftest import REPO, encoded, jpeg_bytes
from tests.phone_files import (
    IPHONE_JPEG,
    NO_IPHONE,
    metadata_segments,
    mpo,
    private_jpeg,
    segments,
    ultra_hdr,
)

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
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
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


def test_animated_webp_is_refused():
    webp = encoded(LESION, "WEBP", save_all=True, append_images=[LESION.rotate(90)])
    assert code_of(webp) == (415, "unsupported_media_type")


# -- what phones send ------------------------------------------------------------------------------------------


def test_real_iphone_photo_decodes_its_primary_image_in_srgb():
    if not IPHONE_JPEG.is_file():
        pytest.skip(NO_IPHONE)
    data = IPHONE_JPEG.read_bytes()
    raw = Image.open(io.BytesIO(data))
    assert raw.format == "MPO" and raw.n_frames == 2  # the photo and its HDR gain map
    photo = decode(data, "image/jpeg")
    assert photo.format == "jpeg" and (photo.width, photo.height) == (1528, 1360) and photo.image.mode == "RGB"
    expected = ImageCms.profileToProfile(
        raw.convert("RGB"),
        ImageCms.ImageCmsProfile(io.BytesIO(raw.info["icc_profile"])),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    )
    as_stored = np.asarray(raw.convert("RGB"), np.float32)
    converted = np.asarray(photo.image, np.float32)
    assert np.abs(converted - np.asarray(expected, np.float32)).mean() < 0.5
    assert np.abs(converted - as_stored).mean() > 0.5  # Display P3 numbers are not sRGB numbers
    assert photo.image.info == {} and metadata_segments(encode_jpeg(photo.image)) == []


@pytest.mark.parametrize("extra", ["gain map", "depth map", "stereo pair"])
def test_multi_picture_jpeg_decodes_its_primary_image(extra):
    primary = synthetic_lesion(400, 300, seed=9)
    others = {
        "gain map": [primary.convert("L").resize((100, 75))],
        "depth map": [Image.new("L", (640, 480), 90)],
        "stereo pair": [synthetic_lesion(400, 300, seed=10), Image.new("L", (40, 30))],
    }[extra]
    data = mpo(primary, *others)
    assert Image.open(io.BytesIO(data)).n_frames == 1 + len(others)
    photo = decode(data, "image/jpeg")
    assert (photo.width, photo.height) == (400, 300) and photo.image.size == (400, 300)
    assert np.abs(np.asarray(photo.image, np.float32) - np.asarray(primary, np.float32)).mean() < 3
    reduced = decode(data, reduce_to=100)  # the DCT-scaled decode reads the primary image too
    assert reduced.image.size == (200, 150) and (reduced.width, reduced.height) == (400, 300)


def test_ultra_hdr_jpeg_decodes_its_primary_image():
    primary = synthetic_lesion(400, 300, seed=11)
    photo = decode(ultra_hdr(primary), "image/jpeg")
    assert (photo.width, photo.height) == (400, 300)
    assert np.abs(np.asarray(photo.image, np.float32) - np.asarray(primary, np.float32)).mean() < 3


def test_heic_with_several_images_decodes_the_primary_one():
    import pillow_heif

    other, primary = Image.new("RGB", (160, 120), (200, 30, 30)), Image.new("RGB", (128, 96), (30, 200, 30))
    heif = pillow_heif.from_pillow(other)
    heif.add_from_pillow(primary)
    buffer = io.BytesIO()
    heif.save(buffer, quality=90, primary_index=1)
    photo = decode(buffer.getvalue(), "image/heic")
    assert (photo.width, photo.height) == (128, 96)
    red, green, _ = photo.image.getpixel((60, 50))
    assert green > 150 and red < 80


# -- colour ----------------------------------------------------------------------------------------------------

P3_SKIN = (200, 100, 80)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_display_p3_photo_is_converted_to_srgb(fmt):
    tagged = encoded(
        Image.new("RGB", (96, 96), P3_SKIN),
        fmt,
        icc_profile=display_p3_icc(),
        **({"quality": 100} if fmt != "PNG" else {}),
    )
    red, green, blue = np.asarray(decode(tagged).image, np.float32).reshape(-1, 3).mean(axis=0)
    # the same numbers mean a more saturated colour in P3: in sRGB red rises and green and blue fall (~215, 93, 72)
    assert red > P3_SKIN[0] + 8 and green < P3_SKIN[1] - 4 and blue < P3_SKIN[2] - 4
    untagged = np.asarray(decode(encoded(Image.new("RGB", (96, 96), P3_SKIN), fmt)).image, np.float32)
    assert np.abs(untagged.reshape(-1, 3).mean(axis=0) - P3_SKIN).max() < 3  # no profile: sRGB already


@pytest.mark.parametrize("primaries,converted", [(12, True), (1, False)])
def test_heic_naming_p3_by_nclx_code_points_is_converted_and_srgb_is_not(primaries, converted):
    import pillow_heif

    heif = pillow_heif.from_pillow(Image.new("RGB", (96, 96), P3_SKIN))
    heif.info["nclx_profile"] = {
        "color_primaries": primaries,
        "transfer_characteristics": 13,
        "matrix_coefficients": 6,
        "full_range_flag": 1,
    }
    buffer = io.BytesIO()
    heif.save(buffer, quality=100, save_nclx_profile=True)
    red, green, _ = np.asarray(decode(buffer.getvalue()).image, np.float32).reshape(-1, 3).mean(axis=0)
    assert (red > P3_SKIN[0] + 8 and green < P3_SKIN[1] - 4) == converted


def test_the_built_in_display_p3_profile_converts_as_apples_does():
    if not IPHONE_JPEG.is_file():
        pytest.skip(NO_IPHONE)
    apple = ImageCms.ImageCmsProfile(io.BytesIO(Image.open(IPHONE_JPEG).info["icc_profile"]))
    pixels = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    srgb = ImageCms.createProfile("sRGB")
    ours = ImageCms.profileToProfile(pixels, ImageCms.ImageCmsProfile(io.BytesIO(display_p3_icc())), srgb)
    theirs = ImageCms.profileToProfile(pixels, apple, srgb)
    assert np.abs(np.asarray(ours, np.float32) - np.asarray(theirs, np.float32)).max() <= 1


def test_a_broken_or_grey_profile_leaves_the_colours_as_stored():
    broken = encoded(Image.new("RGB", (96, 96), P3_SKIN), "PNG", icc_profile=b"not a profile" * 20)
    assert decode(broken).image.getpixel((5, 5)) == P3_SKIN


# -- nothing private kept ----------------------------------------------------------------------------------------


def test_stored_jpeg_carries_no_metadata_at_all():
    source = private_jpeg(LESION)
    assert {"COM", "APP1", "APP2", "APP13"} <= set(metadata_segments(source))
    stored = encode_jpeg(decode(source).image)
    assert metadata_segments(stored) == []
    assert b"Jane Doe" not in stored and b"PhoneMaker" not in stored
    assert [marker for marker, _ in segments(stored)][0] == 0xE0  # only the bare JFIF header before the tables


def test_png_text_and_exif_are_not_carried_into_the_stored_jpeg():
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "patient Jane Doe")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    stored = encode_jpeg(decode(encoded(LESION, "PNG", pnginfo=text, exif=exif.tobytes())).image)
    assert metadata_segments(stored) == [] and b"Jane Doe" not in stored


# -- cheap checks first, and memory ------------------------------------------------------------------------------


def test_probe_refuses_from_the_header_what_decode_would_refuse():
    for data, expected in [
        (png_header_only(20000, 20000), (422, "image_too_large")),
        (encoded(Image.new("RGB", (200, 63)), "PNG"), (422, "image_too_small")),
        (encoded(LESION, "WEBP", save_all=True, append_images=[LESION.rotate(90)]), (415, "unsupported_media_type")),
        (b"%PDF-1.7", (415, "unsupported_media_type")),
    ]:
        with pytest.raises(ServiceError) as caught:
            probe(data)
        assert (caught.value.status, caught.value.code) == expected
    whole = jpeg_bytes(LESION)
    truncated = whole[: len(whole) // 2]  # the header and half the pixels: only decoding finds out
    assert probe(truncated).format == "jpeg" and code_of(truncated) == (400, "invalid_image")


def test_sixteen_bit_grey_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 256 * 64).reshape(64, 256).astype("<u2")
    photo = decode(encoded(Image.fromarray(ramp), "PNG"), keep_grey=True)
    assert photo.image.mode == "L"
    assert np.abs(np.asarray(photo.image, np.float32) - ramp / 257.0).max() <= 1.0
    assert decode(encoded(Image.fromarray(ramp), "PNG")).image.mode == "RGB"


MEASURE = """
import sys
from shared.analysis.imaging import decode, encode_jpeg

def status_kb(field):  # this process's own figures (ru_maxrss would include the parent's, from before exec)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

data = open(sys.argv[1], "rb").read()
before = status_kb("VmRSS")
stored = encode_jpeg(decode(data, keep_grey=True).image)
print((status_kb("VmHWM") - before) // 1024)
"""


@pytest.mark.slow
def test_forty_megapixel_sixteen_bit_png_decodes_in_little_memory(tmp_path):
    """~100 KB of 16-bit PNG, 40 MP: before, a float64 copy made it cost ~1 GiB; now ~130 MB (16-bit + 8-bit)."""
    side = 6300
    ramp = np.tile(np.arange(side, dtype=np.uint16)[None, :] * 10, (side, 1)).astype("<u2")
    path = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(path, "PNG", compress_level=9)
    del ramp
    assert path.stat().st_size < 200_000
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 200, f"decoding and re-encoding took {done.stdout.strip()} MB more"


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


@pytest.mark.parametrize(
    "side,max_pixels,shown", [(20000, 40_000_000, "over 40 megapixels"), (1000, 500_000, "over 500,000 pixels")]
)
def test_the_pixel_limit_is_named_exactly_in_the_message(side, max_pixels, shown):
    with pytest.raises(ServiceError) as refused:
        probe(png_header_only(side, side), "image/png", max_pixels=max_pixels)
    assert shown in refused.value.message
