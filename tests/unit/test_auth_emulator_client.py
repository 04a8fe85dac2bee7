"""The Auth emulator's REST client turns every error answer into AuthError, whatever its body."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack import auth_emulator

BODIES = {
    "/json": (400, b'{"error": {"code": 400, "message": "EMAIL_NOT_FOUND"}}', "EMAIL_NOT_FOUND"),
    "/html": (502, b"<html><body>Bad Gateway</body></html>", "<html><body>Bad Gateway</body></html>"),
    "/empty": (503, b"", "(empty answer)"),
    "/other-json": (500, b'["not", "the", "error", "shape"]', '["not", "the", "error", "shape"]'),
}


class Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body, _ = BODIES[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_error_answer_raises_auth_error(host, path):
    status, _, message = BODIES[path]
    with pytest.raises(auth_emulator.AuthError) as raised:
        auth_emulator._call(host, path.lstrip("/"), {})
    assert raised.value.status == status and raised.value.message == message
