"""Decoding and validation of uploaded photos: what phones and browsers send, and nothing else.

The format is recognised from the bytes; the image size is read from the header and checked before the pixels
are decoded, so a decompression bomb is refused without allocating it. Phones write extra images beside the
photo (multi-picture JPEG: HDR gain maps, depth maps; HEIC auxiliary images and thumbnails): the primary image is
the photo. Colours are converted to sRGB from an embedded ICC profile (iPhones: Display P3), and nothing of the
file's metadata survives into the decoded image.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageCms, ImageOps

from shared.errors import ServiceError, exactly

# HEIC/HEIF, what iPhones send: the primary image is the photo; depth maps, auxiliary images and thumbnails
# are not even read
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

Image.MAX_IMAGE_PIXELS = None  # the limit is ours (MAX_IMAGE_PIXELS), checked before decoding

SUPPORTED = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heif": "image/heif"}
CONTENT_TYPE_ALIASES = {
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heif",
    "image/heif": "heif",
    "image/heic-sequence": "heif",
    "image/heif-sequence": "heif",
}
GENERIC_TYPES = {"", "application/octet-stream"}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
OTHER_SIGNATURES = {  # recognised, refused with 415
    b"GIF8": "gif",
    b"%PDF": "pdf",
    b"PK\x03\x04": "zip",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}
# Formats whose extra frames are an animation (refused). A JPEG's extra images (MPO: gain map, depth, stereo
# pair) and a HEIF's other images are not: Pillow opens the primary image of both.
ANIMATED_FORMATS = {"png", "webp"}
SIXTEEN_BIT_GREY = {"I;16", "I;16L", "I;16B"}
STRIP_ROWS = 256  # rows converted at a time from 16-bit grey, so no full-size temporary is made
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
NCLX_DISPLAY_P3 = 12  # HEIF's nclx colour primaries code point for P3 with a D65 white (SMPTE EG 432-1)


def display_p3_icc() -> bytes:
    """Display P3 as an ICC v2 matrix/TRC profile: the P3 primaries adapted to D50 (as in Apple's profile) and the
    sRGB tone curve. For photos that name their colours by nclx code points (HEIC) instead of embedding a profile."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def tag(kind: bytes, body: bytes) -> bytes:
        return kind + b"\x00" * 4 + body + b"\x00" * (-len(body) % 4)

    text = b"Display P3"
    tags = {
        b"desc": tag(b"desc", struct.pack(">I", len(text) + 1) + text + b"\x00" + b"\x00" * 78),
        b"cprt": tag(b"text", b"No copyright\x00"),
        b"wtpt": tag(b"XYZ ", s15(0.9642) + s15(1.0) + s15(0.8249)),
        b"rXYZ": tag(b"XYZ ", s15(0.515121) + s15(0.241196) + s15(-0.001053)),
        b"gXYZ": tag(b"XYZ ", s15(0.291977) + s15(0.692245) + s15(0.041885)),
        b"bXYZ": tag(b"XYZ ", s15(0.157104) + s15(0.066574) + s15(0.784073)),
    }
    srgb_curve = tag(
        b"para",
        struct.pack(">HH", 3, 0)
        + b"".join(s15(value) for value in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)),
    )
    tags.update({name: srgb_curve for name in (b"rTRC", b"gTRC", b"bTRC")})
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for name, data in tags.items():
        table += name + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body))
        + b"lcms\x02\x10\x00\x00mntrRGB XYZ "
        + b"\x00" * 12
        + b"acsp"
        + b"\x00" * 28
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\x00" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + body


DISPLAY_P3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_icc()))


def sniff(data: bytes) -> str | None:
    """The image format the bytes really are: a SUPPORTED key, another known type's name, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "heif" if data[8:12] in HEIF_BRANDS else "isobmff"
    for signature, name in OTHER_SIGNATURES.items():
        if data.startswith(signature):
            return name
    head = data[:512].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype", b"<html", b"{", b"[")):
        return "text"
    return None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def check_format(data: bytes, declared: str | None) -> str:
    """Return the SUPPORTED format of ``data``; raise 415 for another type or a declared type that lies."""
    declared_type = media_type(declared)
    if declared_type not in GENERIC_TYPES and declared_type not in CONTENT_TYPE_ALIASES:
        raise ServiceError(
            415, "unsupported_media_type", f"'{declared_type}' is not accepted; send a JPEG, PNG, WebP or HEIC photo."
        )
    actual = sniff(data)
    if actual is None:
        raise ServiceError(400, "invalid_image", "The bytes are not an image; send a JPEG, PNG, WebP or HEIC photo.")
    if actual not in SUPPORTED:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"This file is {actual.upper()}, which is not accepted; send a JPEG, PNG, WebP or HEIC photo.",
        )
    if declared_type not in GENERIC_TYPES and CONTENT_TYPE_ALIASES[declared_type] != actual:
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"The declared type '{declared_type}' does not match the bytes, which are "
            f"{actual.upper()}; send the file with its real type.",
        )
    return actual


@dataclass(frozen=True)
class Header:
    """What the file's header says, read without decoding a pixel."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class Photo:
    """A decoded, upright 8-bit sRGB photo (RGB, or L with ``keep_grey``) with no metadata; ``image`` may be a
    reduced decode (see ``decode``), ``width`` and ``height`` are the photo's own."""

    image: Image.Image
    format: str
    width: int
    height: int


def invalid() -> ServiceError:
    return ServiceError(
        400, "invalid_image", "The image could not be decoded (it may be truncated or corrupt); send the photo again."
    )


JPEG_MAX_SIDE = 65_500  # the longest side libjpeg writes (JPEG_MAX_DIMENSION)


def _open(data: bytes, declared: str | None, min_side: int, max_pixels: int) -> tuple[str, Image.Image]:
    """Every check that costs less than decoding: type, size and animation, from the header alone."""
    if not data:
        raise ServiceError(400, "missing_image", "The request carries no image; attach a photo.")
    fmt = check_format(data, declared)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            frames = getattr(image, "n_frames", 1)
    except Exception as exc:  # PIL raises many types for broken data
        raise invalid() from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ServiceError(
            422,
            "image_too_large",
            f"The photo is {width}x{height}, over {exactly(max_pixels, 10**6, 'megapixels', 'pixels')}; send a smaller photo.",
        )
    if max(width, height) > JPEG_MAX_SIDE:  # the stored photo is a JPEG
        raise ServiceError(
            422,
            "image_too_large",
            f"The photo is {width}x{height}; a side may be at most {JPEG_MAX_SIDE:,} px; send a smaller photo.",
        )
    if min(width, height) < min_side:  # a quarter turn (EXIF orientation) does not change the shorter side
        raise ServiceError(
            422, "image_too_small", f"The photo is {width}x{height}; its shorter side must be at least {min_side} px."
        )
    if frames > 1 and fmt in ANIMATED_FORMATS:
        raise ServiceError(415, "unsupported_media_type", "Animated images are not accepted; send a single photo.")
    return fmt, image


def probe(data: bytes, declared: str | None = None, *, min_side: int = 64, max_pixels: int = 40_000_000) -> Header:
    """The checks of ``decode`` that need no decoding (run them before anything costly); raises as ``decode``."""
    fmt, image = _open(data, declared, min_side, max_pixels)
    return Header(fmt, *image.size)


def decode(
    data: bytes,
    declared: str | None = None,
    *,
    min_side: int = 64,
    max_pixels: int = 40_000_000,
    reduce_to: int | None = None,
    keep_grey: bool = False,
) -> Photo:
    """Validate and decode ``data``'s primary image: EXIF orientation applied, colours converted to sRGB from an
    embedded ICC profile, any mode converted to 8-bit RGB, no metadata kept (``image.info`` is empty).

    ``keep_grey`` (for storage): a greyscale photo stays 8-bit grey (``L``), a third of the memory of RGB.

    ``reduce_to`` (for analysis, which never needs the full resolution): a JPEG is decoded at the smallest
    DCT scale (1/2, 1/4 or 1/8) that keeps both sides at least ``reduce_to`` pixels, several times faster than
    a full decode. ``width`` and ``height`` stay those of the photo itself.
    """
    fmt, image = _open(data, declared, min_side, max_pixels)
    width, height = image.size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            icc, nclx = image.info.get("icc_profile"), image.info.get("nclx_profile") or {}
            if reduce_to:
                image.draft(None, (reduce_to, reduce_to))  # a no-op for formats other than JPEG
            image.load()
            decoded_size = image.size
            ImageOps.exif_transpose(image, in_place=True)  # no copy when the photo is upright
            if image.mode in SIXTEEN_BIT_GREY:
                image = sixteen_bit_to_grey(image)  # rebinding frees the 16-bit pixels before RGB is made
            rgb = image if keep_grey and image.mode == "L" else to_srgb_rgb(image, icc, nclx.get("color_primaries"))
    except Exception as exc:  # PIL raises many types for broken data
        raise invalid() from exc
    rgb.info = {}  # nothing of the file's metadata (EXIF, comment, XMP, ICC...) goes further
    if rgb.size != decoded_size:  # EXIF orientation turned it a quarter
        width, height = height, width
    return Photo(rgb, fmt, width, height)


def to_srgb_rgb(image: Image.Image, icc: bytes | None, nclx_primaries: int | None = None) -> Image.Image:
    """8-bit sRGB: the colours converted from the embedded ICC profile (RGB or CMYK) when it is usable, else from
    Display P3 when a HEIC's nclx colour information names P3 primaries."""
    profile = _profile(icc) or (DISPLAY_P3 if nclx_primaries == NCLX_DISPLAY_P3 else None)
    space = profile.profile.xcolor_space.strip() if profile else None
    try:
        if profile is not None and space == "CMYK" and image.mode == "CMYK":
            converted = ImageCms.profileToProfile(image, profile, SRGB, outputMode="RGB")
            assert converted is not None  # not in place: a new image
            return converted
        rgb = to_rgb(image)
        if profile is not None and space == "RGB":
            ImageCms.profileToProfile(rgb, profile, SRGB, outputMode="RGB", inPlace=True)
        return rgb
    except ImageCms.PyCMSError:  # a profile LittleCMS cannot apply: the colours as they were stored
        return to_rgb(image)


def _profile(icc: bytes | None) -> ImageCms.ImageCmsProfile | None:
    if not icc:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: palette, alpha (over white), 16-bit grey, greyscale, CMYK."""
    if image.mode in SIXTEEN_BIT_GREY:
        image = sixteen_bit_to_grey(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def sixteen_bit_to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey from 16-bit grey, a strip at a time: 1 byte a pixel beside the 16-bit image, no float copy.

    Samples are scaled from 0-65535 (the high byte); a file that uses only 0-255 is taken as it is."""
    _, high = image.getextrema()
    assert isinstance(high, int)  # one band: (min, max)
    if high <= 255:
        return image.convert("L")
    rawmode = "L;16B" if image.mode == "I;16B" else "L;16"  # the unpacker that keeps each sample's high byte
    grey = Image.new("L", image.size)
    for top in range(0, image.height, STRIP_ROWS):
        strip = image.crop((0, top, image.width, min(image.height, top + STRIP_ROWS)))
        grey.paste(Image.frombytes("L", strip.size, strip.tobytes(), "raw", rawmode), (0, top))
    return grey


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """Re-encode as JPEG with no metadata at all: no EXIF (no location, no MakerNote), no comment, no XMP, no
    IPTC, no ICC profile (the pixels are sRGB); orientation already applied. Only the JFIF header is written."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, exif=b"", comment=b"")  # comment: else taken from .info
    return buffer.getvalue()
