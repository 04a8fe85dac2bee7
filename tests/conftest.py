"""Fixtures shared by every test layer: paths, generated photos and the optional real HAM10000 images."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from devstack.sample import synthetic_lesion

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
NO_DATA = f"{SHARED_DATA} is absent: the HAM10000 images are not part of the repository (CI has them beside it)"


def _contract_table(after: str) -> set[str]:
    """The field names in the first column of the docs/API.md table that follows ``after``."""
    text = (REPO / "docs" / "API.md").read_text().split(after, 1)[1]
    table = text[text.index("\n|") :].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row)}


def contract_job_fields() -> set[str]:
    """The job document's fields, read from the contract (docs/API.md, a copy of ../shared/API.md): the rows of
    its "The job document" table. The document holds these and no others."""
    return _contract_table("## The job document")


def contract_result_fields() -> set[str]:
    """The fields of a done job's ``result``, from the contract's `result` table."""
    return _contract_table("\n`result`:")


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


def real_phone_photos() -> list[Path]:
    """Phone-sized (600x450) real dermoscopic photos; none where ../shared/data is absent."""
    return sorted((SHARED_DATA / "ham10000-600x450" / "images").glob("*.jpg"))


@pytest.fixture(scope="session")
def phone_photos() -> list[Path]:
    """Phone-sized (600x450) real dermoscopic photos, when ../shared/data is present."""
    photos = real_phone_photos()
    if not photos:
        pytest.skip(NO_DATA)
    return photos
