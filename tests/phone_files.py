"""Files as phones write them, generated: multi-picture JPEGs (MPO, Ultra HDR gain maps), Display P3 colour,
metadata of every kind; and a JPEG segment parser to check what a stored file carries."""

from __future__ import annotations

import io
import struct

from PIL import Image

from shared.analysis.imaging import display_p3_icc
from tests.conftest import SHARED_DATA

IPHONE_JPEG = SHARED_DATA / "other" / "normal-skin-no-lesion.jpg"
NO_IPHONE = f"{IPHONE_JPEG} is absent: the real iPhone 14 photo is not part of the repository (CI has it beside it)"

SEGMENT_NAMES = {0xE0: "APP0", 0xE1: "APP1", 0xE2: "APP2", 0xED: "APP13", 0xFE: "COM"}


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def mpo(primary: Image.Image, *others: Image.Image) -> bytes:
    """A multi-picture JPEG (CIPA DC-007) as phones write it: the photo first, then its extra images."""
    buffer = io.BytesIO()
    primary.save(buffer, format="MPO", save_all=True, append_images=list(others), quality=92)
    return buffer.getvalue()


HDRGM_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def ultra_hdr(primary: Image.Image) -> bytes:
    """An Ultra HDR JPEG (Android 14+): the SDR photo with hdrgm XMP, then a quarter-size grey gain map."""
    gain_map = primary.convert("L").resize((primary.width // 4, primary.height // 4))
    data = mpo(primary, gain_map)
    after_jfif = 4 + struct.unpack(">H", data[4:6])[0]  # before the MPF segment: its offsets stay right
    xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + HDRGM_XMP)
    return data[:after_jfif] + xmp + data[after_jfif:]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg_data: bytes, *segments: bytes) -> bytes:
    """``jpeg_data`` with ``segments`` inserted right after SOI."""
    return jpeg_data[:2] + b"".join(segments) + jpeg_data[2:]


def private_jpeg(image: Image.Image) -> bytes:
    """A JPEG carrying every kind of metadata, each with a personal detail: EXIF (GPS, MakerNote), a comment,
    XMP, IPTC and an ICC profile."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS latitude
    exif.get_ifd(0x8769)[0x927C] = b"MakerNote serial 1234 Jane Doe"
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Jane Doe</x:xmpmeta>'
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x05\x00\x08Jane Doe"
    return with_segments(
        jpeg(image, exif=exif.tobytes(), icc_profile=display_p3_icc()),
        segment(0xFE, b"patient Jane Doe"),
        segment(0xE1, xmp),
        segment(0xED, iptc),
    )


def segments(data: bytes) -> list[tuple[int, bytes]]:
    """The (marker, payload) of each JPEG segment before the image data (start of scan)."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    found, at = [], 2
    while at < len(data):
        assert data[at] == 0xFF, f"no marker at byte {at}"
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        found.append((marker, data[at + 4 : at + 2 + length]))
        if marker == 0xDA:
            break
        at += 2 + length
    return found


def metadata_segments(data: bytes) -> list[str]:
    """The segments of a JPEG that can carry metadata: APPn (but a bare JFIF APP0) and COM."""
    return [
        SEGMENT_NAMES.get(marker, hex(marker))
        for marker, payload in segments(data)
        if (0xE0 <= marker <= 0xEF or marker == 0xFE) and not (marker == 0xE0 and payload.startswith(b"JFIF\x00"))
    ]
