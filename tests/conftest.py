"""Fixtures shared by every test layer: paths, generated photos and the optional real HAM10000 images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from devstack.sample import synthetic_lesion

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
NO_DATA = f"{SHARED_DATA} is absent: the HAM10000 images are not part of the repository (CI has them beside it)"


def jpeg_bytes(image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **save_options)
    return buffer.getvalue()


def encoded(image, fmt: str, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def sharp_jpeg() -> bytes:
    return jpeg_bytes(synthetic_lesion(seed=1))


@pytest.fixture(scope="session")
def blurred_jpeg() -> bytes:
    return jpeg_bytes(synthetic_lesion(seed=1, blur=6))


@pytest.fixture(scope="session")
def phone_photos() -> list[Path]:
    """Phone-sized (600x450) real dermoscopic photos, when ../shared/data is present."""
    folder = SHARED_DATA / "ham10000-600x450" / "images"
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        pytest.skip(NO_DATA)
    return photos
