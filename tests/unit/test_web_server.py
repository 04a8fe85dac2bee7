"""The web client's static server serves the page's files only, judged on the decoded, normalised path."""

from __future__ import annotations

import functools
import http.client
import threading
from http.server import ThreadingHTTPServer

import pytest

from devstack import web_server

HOSTILE = [
    "/node_modules/firebase/package.json",
    "/%6eode_modules/firebase/package.json",  # encoded 'n': the old prefix check let this through
    "/%2e%2e/pyproject.toml",
    "/../pyproject.toml",
    "/dist/../package.json",
    "/src/%2e%2e/package.json",
    "/package.json",
    "/package-lock.json",
    "/README.md",
    "/dist/../../.git/config",
    "//etc/passwd",
    "/src/..%2f..%2fpyproject.toml",
    "/dist/app.js%00.png",
    "/src/nested/deep.js",
    "/%ff",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_are_not_allowed(path):
    try:
        assert not web_server.allowed(path)
    except UnicodeDecodeError:
        pass  # the handler answers 404 to a path that is not UTF-8


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/style.css", "/config.json?x=1", "/dist/app.js", "/dist/app.js.map", "/src/render.js"]
)
def test_the_pages_files_are_allowed(path):
    assert web_server.allowed(path)


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(web_server.Handler, config=web_server.client_config(environ={}))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(method, path)  # sent as written: no client-side normalisation
    reply = connection.getresponse()
    return reply.status, reply.read()


@pytest.mark.parametrize("path", HOSTILE)
def test_the_server_answers_404_to_hostile_paths(server, path):
    assert get(server, path)[0] == 404
    assert get(server, path, "HEAD")[0] == 404


def test_the_server_serves_the_page_and_its_config(server):
    status, body = get(server, "/")
    assert status == 200 and b'data-testid="status"' in body
    assert get(server, "/src/render.js")[0] == 200
    status, body = get(server, "/config.json")
    assert status == 200 and b'"uploadUrl": "http://127.0.0.1:8091/"' in body


def test_the_upload_url_comes_from_the_flag_only():
    config = web_server.client_config("http://127.0.0.1:9991/", environ={"UPLOAD_URL": "http://elsewhere/"})
    assert config["uploadUrl"] == "http://127.0.0.1:9991/"
