"""Decoding and validation of uploaded photos: what phones and browsers send, and nothing else.

The format is recognised from the bytes; the image size is read from the header and checked before the pixels
are decoded, so a decompression bomb is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageOps

from shared.errors import ServiceError

pillow_heif.register_heif_opener()  # HEIC/HEIF, what iPhones send

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
class Photo:
    """A decoded, upright RGB photo; ``image`` may be a reduced decode (see ``decode``), ``width`` and
    ``height`` are the photo's own."""

    image: Image.Image
    format: str
    width: int
    height: int


def decode(
    data: bytes,
    declared: str | None = None,
    *,
    min_side: int = 64,
    max_pixels: int = 40_000_000,
    reduce_to: int | None = None,
) -> Photo:
    """Validate and decode ``data``: EXIF orientation applied; any mode converted to 8-bit RGB.

    ``reduce_to`` (for analysis, which never needs the full resolution): a JPEG is decoded at the smallest
    DCT scale (1/2, 1/4 or 1/8) that keeps both sides at least ``reduce_to`` pixels, several times faster than
    a full decode. ``width`` and ``height`` stay those of the photo itself.
    """
    if not data:
        raise ServiceError(400, "missing_image", "The request carries no image; attach a photo.")
    fmt = check_format(data, declared)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ServiceError(
                    422,
                    "image_too_large",
                    f"The photo is {width}x{height}, over {max_pixels // 1_000_000} megapixels; send a smaller photo.",
                )
            if getattr(image, "n_frames", 1) > 1 and fmt != "heif":
                raise ServiceError(
                    415, "unsupported_media_type", "Animated images are not accepted; send a single photo."
                )
            if reduce_to:
                image.draft(None, (reduce_to, reduce_to))  # a no-op for formats other than JPEG
            image.load()
            decoded_size = image.size
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image)
    except ServiceError:
        raise
    except Exception as exc:  # PIL raises many types for broken data
        raise ServiceError(
            400,
            "invalid_image",
            "The image could not be decoded (it may be truncated or corrupt); send the photo again.",
        ) from exc
    if rgb.size != decoded_size:  # EXIF orientation turned it a quarter
        width, height = height, width
    if min(width, height) < min_side:
        raise ServiceError(
            422, "image_too_small", f"The photo is {width}x{height}; its shorter side must be at least {min_side} px."
        )
    return Photo(rgb, fmt, width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: palette, alpha (over white), 16-bit, greyscale, CMYK."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """Re-encode as JPEG with no metadata at all (no EXIF: no location), orientation already applied."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
