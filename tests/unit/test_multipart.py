"""The multipart reader of the upload edge: one photo in the field 'image', and a cap on the number of parts."""

from __future__ import annotations

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shared.errors import ServiceError
from shared.http import MAX_FORM_PARTS, read_image

LIMIT = 10 * 1024 * 1024


def many_parts(count: int, photo: bytes = b"\xff\xd8\xff photo") -> Request:
    """The photo first, then ``count - 1`` tiny text fields: about 60 bytes a part."""
    boundary = "----parts"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + b"\r\n"
    )
    body += b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode() for i in range(count - 1)
    )
    body += f"--{boundary}--\r\n".encode()
    return Request(
        EnvironBuilder(method="POST", data=body, content_type=f"multipart/form-data; boundary={boundary}").get_environ()
    )


def test_a_photo_with_a_few_fields_is_read():
    data, content_type = read_image(many_parts(MAX_FORM_PARTS), LIMIT)
    assert data == b"\xff\xd8\xff photo" and content_type == "image/jpeg"


@pytest.mark.parametrize("count", [MAX_FORM_PARTS + 1, 15_000])
def test_too_many_parts_is_a_clear_400_before_parsing_them_all(count):
    with pytest.raises(ServiceError) as caught:
        read_image(many_parts(count), LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert f"more than {MAX_FORM_PARTS} parts" in caught.value.message


def body_of(disposition: bytes, content: bytes = b"\xff\xd8\xff photo", end: bytes = b"\r\n--b--\r\n") -> Request:
    body = b"--b\r\nContent-Disposition: form-data; " + disposition + b"\r\nContent-Type: image/jpeg\r\n\r\n"
    return Request(
        EnvironBuilder(
            method="POST", data=body + content + end, content_type="multipart/form-data; boundary=b"
        ).get_environ()
    )


def test_a_photo_part_without_a_file_name_is_read_byte_for_byte():
    # Dart's MultipartFile.fromBytes('image', bytes) and curl -F 'image=<photo.jpg' send no filename
    photo = bytes(range(256)) * 4  # not text in any encoding
    assert read_image(body_of(b'name="image"', photo), LIMIT) == (photo, "image/jpeg")


@pytest.mark.parametrize(
    "disposition, end",
    [
        (b'name="image"; filename="a.jpg"', b"\r\n--b"),
        ('name="image"; filename="ph\u00f6to.jpg"'.encode("latin-1"), b"\r\n--b--\r\n"),
    ],
    ids=["truncated", "latin-1 file name"],
)
def test_a_body_that_does_not_parse_is_a_clear_400(disposition, end):
    with pytest.raises(ServiceError) as caught:
        read_image(body_of(disposition, end=end), LIMIT)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")


@pytest.mark.parametrize("limit,shown", [(LIMIT, "larger than 10 MiB"), (500_000, "larger than 500,000 bytes")])
def test_the_size_limit_is_named_exactly_in_the_message(limit, shown):
    raw = Request(EnvironBuilder(method="POST", data=b"\xff" * (limit + 1), content_type="image/jpeg").get_environ())
    with pytest.raises(ServiceError) as refused:
        read_image(raw, limit)
    assert refused.value.status == 413 and shown in refused.value.message


def test_a_multipart_body_over_the_limit_names_the_photos_limit():
    request = many_parts(1, photo=b"\xff" * (LIMIT + 200_000))  # past the photo limit and the multipart overhead
    with pytest.raises(ServiceError) as refused:
        read_image(request, LIMIT)
    assert refused.value.status == 413 and "larger than 10 MiB" in refused.value.message
