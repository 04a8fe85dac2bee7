"""The HTTP edge shared by the three functions: body reading, CORS, JSON errors and one log line per request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wrappers import Request

from shared.errors import ServiceError, described, exactly, invalid_request
from shared.usecases import Outcome

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Firebase-AppCheck"
MULTIPART_OVERHEAD = 64 * 1024
MAX_FORM_PARTS = 16  # one photo and a few fields; parsing thousands of tiny parts costs CPU for nothing


def too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "payload_too_large",
        f"The upload is larger than {exactly(limit, 2**20, 'MiB', 'bytes')}; send a smaller photo.",
    )


def read_body(request: Request, limit: int, photo_limit: int | None = None) -> bytes:
    """The raw body, refusing more than ``limit`` bytes whether or not Content-Length was sent; the refusal names
    ``photo_limit`` (the photo's own limit, where ``limit`` adds a multipart body's overhead to it)."""
    named = limit if photo_limit is None else photo_limit
    if request.content_length is not None and request.content_length > limit:
        raise too_large(named)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(named)
    return data


def read_image(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The photo of an upload: the multipart field ``image`` or the raw body; its bytes and declared type."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/form-data"):
        body = read_body(request, limit + MULTIPART_OVERHEAD, photo_limit=limit)
        parts = [(part_type, data) for name, part_type, data in form_parts(body, content_type) if name == "image"]
        if not parts:
            raise ServiceError(400, "missing_image", "No file in the multipart field 'image'; attach the photo there.")
        if len(parts) > 1:
            raise invalid_request("Send exactly one photo per upload (several files were in the field 'image').")
        part_type, data = parts[0]
        if len(data) > limit:
            raise too_large(limit)
        return data, part_type
    return read_body(request, limit), content_type


def form_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """Each part of a multipart/form-data body as (name, media type, bytes), whether or not it names a file: a
    client that sends the photo without a file name (Dart's ``MultipartFile.fromBytes`` does by default) is read as
    one that names it. At most ``MAX_FORM_PARTS`` parts are parsed."""
    parts: list[tuple[str, str | None, list[bytes]]] = []  # each part's data as the decoder's chunks
    try:
        boundary = parse_options_header(content_type)[1].get("boundary", "")
        if not boundary:
            raise ValueError("no boundary")
        decoder = MultipartDecoder(boundary.encode("latin-1", "replace"), max_parts=MAX_FORM_PARTS)
        decoder.receive_data(body)
        decoder.receive_data(None)
        while not isinstance(event := decoder.next_event(), Epilogue):
            if isinstance(event, NeedData):
                raise ValueError("the body ends before its closing boundary")
            if isinstance(event, Field | File):
                media_type = event.headers.get("Content-Type")
                parts.append((event.name, parse_options_header(media_type)[0] if media_type else None, []))
            elif isinstance(event, Data):
                parts[-1][2].append(event.data)
    except RequestEntityTooLarge:
        raise invalid_request(
            f"The multipart body has more than {MAX_FORM_PARTS} parts; send one file in the field 'image'."
        ) from None
    except Exception:
        raise invalid_request(
            "The multipart body could not be parsed (headers and file names must be UTF-8); send one file in the field 'image'."
        ) from None
    return [(name, media_type, b"".join(chunks)) for name, media_type, chunks in parts]


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not all(33 <= ord(ch) <= 126 or ch == " " for ch in key):
        raise invalid_request("Idempotency-Key must be 1 to 128 printable ASCII characters.")
    return key


def cors_headers(request: Request, allowed_origins: tuple[str, ...]) -> dict[str, str]:
    """CORS headers for this request; ``Vary: Origin`` on every answer once any origin is allowed, so a cache never
    serves one origin's answer to another."""
    origin = request.headers.get("Origin")
    if origin and origin in allowed_origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": "Location, Retry-After",
        }
    return {"Vary": "Origin"} if allowed_origins else {}


def preflight(request: Request, cors: dict[str, str], methods: str) -> Outcome:
    """The answer to a CORS preflight: 204 with the methods and headers allowed, or 403 for another origin."""
    if request.headers.get("Origin") and "Access-Control-Allow-Origin" not in cors:
        return Outcome(403, ServiceError(403, "origin_not_allowed", "This origin may not call the API.").body())
    return Outcome(
        204,
        None,
        {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "3600",
        },
    )


def respond(
    request: Request,
    deps,
    function: str,
    handler: Callable[[], Outcome],
    methods: str,
    guard: Callable[[], None] | None = None,
    browsers: bool = True,
):
    """Run ``handler`` for the ``methods`` it serves (e.g. ``"GET, DELETE"``; others get 405, OPTIONS the CORS
    preflight) and turn its Outcome or ServiceError into a JSON response; log one line. ``guard`` runs first, for
    every method: a ServiceError it raises answers the request. ``browsers=False`` (a function no browser calls):
    no CORS headers, and OPTIONS is one more method it does not serve."""
    started = time.perf_counter()
    cors = cors_headers(request, deps.config.ALLOWED_ORIGINS) if browsers else {}
    log: dict = {}
    try:
        if guard is not None:
            guard()
        if request.method == "OPTIONS" and browsers:
            outcome = preflight(request, cors, methods)
        else:
            if request.method not in methods.split(", "):
                allowed = methods.replace(", ", " or ")
                raise ServiceError(405, "method_not_allowed", f"Use {allowed} for {function}.", {"Allow": methods})
            outcome = handler()
            log = outcome.log
    except ServiceError as exc:
        outcome = Outcome(exc.status, exc.body(), exc.headers)
        log = {"error": exc.code, **(described(exc.__cause__) if exc.__cause__ else {}), **exc.log}
    except Exception as exc:  # an unexpected failure: logged, answered as JSON
        log = {"error": "internal", **described(exc)}
        outcome = Outcome(500, ServiceError(500, "internal", "Something went wrong on our side; retry later.").body())
    latency = time.perf_counter() - started
    deps.log.write(
        log.pop("severity", None) or ("ERROR" if outcome.status >= 500 else "INFO"),
        f"{function} {request.method} {outcome.status}",
        function=function,
        **log,
        httpRequest={
            "requestMethod": request.method,
            "status": outcome.status,
            "latency": f"{latency:.4f}s",
            "userAgent": request.headers.get("User-Agent"),
        },
    )
    headers = {**cors, **outcome.headers}
    if outcome.body is None:
        return "", outcome.status, headers
    return json.dumps(outcome.body), outcome.status, {**headers, "Content-Type": "application/json"}
