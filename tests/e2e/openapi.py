"""Check the functions' answers against docs/openapi.yaml (openapi-core), as a generated client would rely on them.

``conform(response, function)`` validates one answer; ``checking(urls)`` validates every answer that ``requests``
gets from the given function URLs while it is active (the e2e fixture turns it on for the whole session).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlparse

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathError

SPEC = OpenAPI.from_file_path(str(Path(__file__).resolve().parents[2] / "docs/openapi.yaml"))
SERVER = "https://us-central1-demo-skin.cloudfunctions.net"  # the document's server; paths carry the function


class _AsDocumented(RequestsOpenAPIRequest):
    """The request as the document names it: ``{function URL}/x`` is ``{SERVER}/{function}/x``."""

    def __init__(self, request, function: str):
        super().__init__(request)
        self.function = function

    @property
    def host_url(self) -> str:
        return SERVER

    @property
    def path(self) -> str:
        return f"/{self.function}{super().path}".rstrip("/")


def conform(response: requests.Response, function: str) -> None:
    """Raise AssertionError when ``response`` (an answer of ``function``) is not what docs/openapi.yaml says."""
    try:
        SPEC.validate_response(_AsDocumented(response.request, function), RequestsOpenAPIResponse(response))
    except PathError:
        # A method or path the document does not offer (the hostile tests send them): still the error shape.
        body = response.json()
        assert response.status_code >= 400 and set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (
            f"{function} answered {response.status_code} {body!r} to an undocumented request"
        )
    except Exception as exc:
        raise AssertionError(
            f"{function} {response.request.method} {response.request.url} answered "
            f"{response.status_code} {response.text[:300]!r}, which docs/openapi.yaml does not "
            f"allow: {exc} {getattr(exc, '__cause__', '') or ''}"
        ) from None


@contextlib.contextmanager
def checking(urls: dict[str, str]):
    """Validate every answer ``requests`` receives from these function URLs ({function: base URL})."""
    bases = {urlparse(url).netloc: function for function, url in urls.items()}
    send = requests.Session.send

    def checked_send(session, request, **kwargs):
        response = send(session, request, **kwargs)
        function = bases.get(urlparse(request.url).netloc)
        if function and not kwargs.get("stream"):
            conform(response, function)
        return response

    requests.Session.send = checked_send
    try:
        yield
    finally:
        requests.Session.send = send
