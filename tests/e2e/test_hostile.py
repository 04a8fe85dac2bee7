"""Hostile and broken input: each gets its documented code as JSON, never a server error, and leaves the bucket,
the `jobs` collection and the queue exactly as they were."""

from __future__ import annotations

import json
import socket
import struct
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from devstack.sample import synthetic_lesion
from tests.conftest import encoded, jpeg_bytes

LESION = synthetic_lesion(320, 240, seed=5)
JPEG = jpeg_bytes(LESION)
MAX = 10 * 1024 * 1024


def png_bomb(width: int, height: int) -> bytes:
    """A valid small PNG whose header declares width x height; its zlib stream would inflate to gigabytes."""
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


def jpeg_bomb() -> bytes:
    """A JPEG whose frame header claims 60000x60000 (patched SOF0 of a small image)."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (80, 80), (200, 150, 130))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [LESION.convert("P"), LESION.rotate(90).convert("P")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


def sixteen_bit_png() -> bytes:
    return encoded(Image.fromarray((np.asarray(LESION.convert("L"), np.uint16) * 257).astype("<u2")), "PNG")


def multipart(fields: list[tuple[str, str | None, bytes]], encoding: str = "utf-8") -> tuple[bytes, str]:
    """A multipart body; a part whose filename is None has none (as Dart's ``MultipartFile.fromBytes`` sends it)."""
    boundary = "----skin-test-boundary"
    body = b""
    for name, filename, content in fields:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"').encode()
        body += b"" if filename is None else b'; filename="' + filename.encode(encoding) + b'"'
        body += b"\r\nContent-Type: image/jpeg\r\n\r\n"
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def many_parts(count: int) -> tuple[bytes, str]:
    """The photo, then ``count - 1`` tiny fields: 1 MiB of 15,000 parts cost over a second of CPU to parse."""
    body, content_type = multipart([("image", "a.jpg", JPEG)])
    boundary = content_type.split("boundary=")[1]
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode() for i in range(count - 1)
    )
    return body.replace(f"--{boundary}--".encode(), fields + f"--{boundary}--".encode()), content_type


def animated(fmt: str) -> bytes:
    return encoded(LESION, fmt, save_all=True, append_images=[LESION.rotate(90)])


# (id, raw body, Content-Type, extra headers, expected status, expected code); accepted ones are in test_flow
# and test_phone.
UPLOADS = [
    ("empty body", b"", "image/jpeg", {}, 400, "missing_image"),
    ("truncated jpeg", JPEG[: len(JPEG) // 2], "image/jpeg", {}, 400, "invalid_image"),
    ("random bytes", np.random.default_rng(0).bytes(4096), "application/octet-stream", {}, 400, "invalid_image"),
    ("png declared as jpeg", encoded(LESION, "PNG"), "image/jpeg", {}, 415, "unsupported_media_type"),
    ("jpeg declared as text", JPEG, "text/plain", {}, 415, "unsupported_media_type"),
    (
        "svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
        {},
        415,
        "unsupported_media_type",
    ),
    (
        "svg undeclared",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "application/octet-stream",
        {},
        415,
        "unsupported_media_type",
    ),
    ("pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF", "application/pdf", {}, 415, "unsupported_media_type"),
    ("zip", b"PK\x03\x04" + b"\x00" * 100, "application/zip", {}, 415, "unsupported_media_type"),
    ("html", b"<!DOCTYPE html><html><body>hi</body></html>", "text/html", {}, 415, "unsupported_media_type"),
    ("json instead of an image", b'{"image": "aGVsbG8="}', "application/json", {}, 415, "unsupported_media_type"),
    ("animated gif", animated_gif(), "image/gif", {}, 415, "unsupported_media_type"),
    ("png bomb", png_bomb(20000, 20000), "image/png", {}, 422, "image_too_large"),
    ("jpeg bomb", jpeg_bomb(), "image/jpeg", {}, 422, "image_too_large"),
    ("1x1", encoded(Image.new("RGB", (1, 1)), "PNG"), "image/png", {}, 422, "image_too_small"),
    ("20000x20000", png_bomb(20000, 20000), "application/octet-stream", {}, 422, "image_too_large"),
    ("70000x64, longer than a JPEG holds", png_bomb(70000, 64), "image/png", {}, 422, "image_too_large"),
    ("too long idempotency key", JPEG, "image/jpeg", {"Idempotency-Key": "k" * 129}, 400, "invalid_request"),
    (
        "idempotency key with control characters",
        JPEG,
        "image/jpeg",
        {"Idempotency-Key": "key\twith\ttabs"},
        400,
        "invalid_request",
    ),
    ("multipart without the field", *multipart([("photo", "a.jpg", JPEG)]), {}, 400, "missing_image"),
    (
        "multipart with two images",
        *multipart([("image", "a.jpg", JPEG), ("image", "b.jpg", JPEG)]),
        {},
        400,
        "invalid_request",
    ),
    ("multipart with an empty file", *multipart([("image", "a.jpg", b"")]), {}, 400, "missing_image"),
    (
        "body over the limit with Content-Length",
        b"\xff\xd8\xff" + b"\x00" * MAX,
        "image/jpeg",
        {},
        413,
        "payload_too_large",
    ),
    (
        "multipart over the limit",
        *multipart([("image", "a.jpg", b"\xff\xd8\xff" + b"\x00" * MAX)]),
        {},
        413,
        "payload_too_large",
    ),
    ("no token", JPEG, "image/jpeg", {"Authorization": ""}, 401, "unauthenticated"),
    ("garbage token", JPEG, "image/jpeg", {"Authorization": "Bearer not-a-jwt"}, 401, "unauthenticated"),
    ("tiff", encoded(LESION, "TIFF"), "image/tiff", {}, 415, "unsupported_media_type"),
    ("multipart with 15,000 parts", *many_parts(15_000), {}, 400, "invalid_request"),
    ("animated png", animated("PNG"), "image/png", {}, 415, "unsupported_media_type"),
    ("animated webp", animated("WEBP"), "image/webp", {}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("case", UPLOADS, ids=[case[0] for case in UPLOADS])
def test_hostile_upload_is_refused_and_leaves_nothing(api, case):
    _, body, content_type, extra, status, code = case
    before = api.counts()
    headers = {**api.auth("hostile"), "Content-Type": content_type, **extra}
    reply = requests.post(api.url["upload"], data=body, headers=headers, timeout=60)
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] == code and len(error["message"]) > 10
    assert api.counts() == before


@pytest.mark.parametrize("filename", ["../../etc/passwd", "..\\..\\boot.ini", "photo\x00.jpg", "ph\u00f6to.jpg", None])
def test_odd_or_no_file_names_are_ignored_and_the_photo_stored_under_its_job(api, filename):
    body, content_type = multipart([("image", filename, JPEG)])
    reply = requests.post(
        api.url["upload"], data=body, headers={**api.auth("names"), "Content-Type": content_type}, timeout=30
    )
    assert reply.status_code == 202, reply.text
    job = api.wait("names", reply.json()["jobId"])
    assert job["image"]["path"] == f"uploads/names/{job['jobId']}.jpg"


def test_non_utf8_file_name_is_a_clear_400(api):
    before = api.counts()
    body, content_type = multipart([("image", "ph\u00f6to.jpg", JPEG)], encoding="latin-1")
    reply = requests.post(
        api.url["upload"], data=body, headers={**api.auth("names"), "Content-Type": content_type}, timeout=30
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request"
    assert api.counts() == before


def test_body_over_the_limit_without_content_length(api):
    before = api.counts()
    port = int(api.url["upload"].rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n"
            + b"Authorization: "
            + api.auth("hostile")["Authorization"].encode()
            + b"\r\n\r\n"
        )
        chunk = b"\x00" * (1024 * 1024)
        try:
            for _ in range(12):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before reading it all
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
        head, _, body = answer.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
        while len(body) < int(headers.get("Content-Length", "0")) and (data := sock.recv(65536)):
            body += data
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    assert headers.get("Content-Type") == "application/json", head
    assert json.loads(body)["error"]["code"] == "payload_too_large", body[:200]
    assert api.counts() == before


BAD_IDS = ["", "x" * 5000, "a/b", "../../jobs/other", "..", "%2e%2e%2fjobs", "0123456789abcdef01234567"]


@pytest.mark.parametrize("job_id", BAD_IDS)
def test_status_with_bad_job_ids(api, job_id):
    before = api.counts()
    # ".." in a path is resolved away by every HTTP client: send it as the query form
    url = api.url["status"] + ("?jobId=.." if job_id == ".." else job_id)
    reply = requests.get(url, headers=api.auth("hostile"), timeout=10)
    expected = (400, "invalid_request") if job_id == "" else (404, "not_found")
    assert (reply.status_code, reply.json()["error"]["code"]) == expected
    assert api.counts() == before


@pytest.mark.parametrize(
    "body",
    [
        {"jobId": ""},
        {"jobId": "x" * 5000},
        {"jobId": "a/b/c/d/e/f/g"},
        {"jobId": "../../x/y/z"},
        {"jobId": 12345678},
        {},
        [],
        "not json",
    ],
)
def test_infer_with_bad_bodies(api, body):
    before = api.counts()
    headers = {"X-CloudTasks-QueueName": "infer"}
    if body == "not json":
        reply = requests.post(api.url["infer"], data=b"\xff\xfe", headers=headers, timeout=10)
    else:
        reply = requests.post(api.url["infer"], json=body, headers=headers, timeout=10)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request"
    assert api.counts() == before


@pytest.mark.parametrize("queue", [None, "another-queue", "projects/x/locations/y/queues/other"])
def test_infer_refuses_requests_not_from_its_queue(api, queue, sharp_jpeg):
    api.pause_queue()
    try:
        job_id = api.upload("queue-check", sharp_jpeg).json()["jobId"]
        headers = {"X-CloudTasks-QueueName": queue} if queue else {}
        reply = requests.post(api.url["infer"], json={"jobId": job_id}, headers=headers, timeout=10)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
        assert api.status("queue-check", job_id).json()["status"] == "queued"
    finally:
        api.resume_queue()
    assert api.wait("queue-check", job_id)["status"] == "done"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS"])
def test_infer_refuses_any_method_without_its_queue_header_before_anything_else(api, method):
    """API.md: infer refuses (403, nothing done) a request without the queue's header, whatever its method."""
    before = api.counts()
    reply = requests.request(method, api.url["infer"], headers={"Origin": "http://127.0.0.1:1"}, timeout=10)
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
    with_header = requests.request(method, api.url["infer"], headers={"X-CloudTasks-QueueName": "infer"}, timeout=10)
    assert (
        with_header.status_code == 405 and with_header.headers["Allow"] == "POST"
    )  # no preflight: no browser calls it
    assert api.counts() == before
