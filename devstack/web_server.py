"""Serve the reference web client (``web/``) on 127.0.0.1, with a ``config.json`` naming the local stack.

    python devstack/web_server.py --port 5173 --upload-url http://127.0.0.1:8091/

The page reads ``config.json`` beside it to find the functions and the emulators: the upload function's URL comes
from ``--upload-url``; the rest from the settings the stack gives every process (``STATUS_URL``,
``FIRESTORE_EMULATOR_HOST``, ``FIREBASE_AUTH_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``; see shared/config.py).
Only the files the page needs are served (``PAGE``); ``web/dist/app.js`` is built by ``make web``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import posixpath
import re
import subprocess
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
SOURCES = ("src/app.js", "src/render.js", "package-lock.json")
UPLOAD_URL = "http://127.0.0.1:8091/"  # the local stack's upload function
# What the page needs, and nothing else of web/ (node_modules, package files): exact files, and single files of
# dist/ (the bundle and its source map) and src/ (the modules, which tests import in the page).
PAGE = {"/", "/index.html", "/style.css", "/config.json"}
PAGE_FILE = re.compile(r"/(dist|src)/[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.(js|map)")


def allowed(path: str) -> bool:
    """Whether the request path names a file of the page, judged on the decoded, normalised path."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(path).path, errors="strict")
    if "\\" in path or "\0" in path or not path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    if normal != path.rstrip("/") and not (path == "/" and normal == "/"):
        return False  # `..`, `.`, `//` segments: not how the page names its files
    return normal in PAGE or PAGE_FILE.fullmatch(normal) is not None


def client_config(upload_url: str = UPLOAD_URL, environ=os.environ) -> dict[str, str]:
    auth = environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
    return {
        "projectId": environ.get("GOOGLE_CLOUD_PROJECT", "demo-skin"),
        "apiKey": environ.get("FIREBASE_API_KEY", "fake"),
        "authEmulator": f"http://{auth}" if auth else "",
        "firestoreEmulator": environ.get("FIRESTORE_EMULATOR_HOST", ""),
        "uploadUrl": upload_url,
        "statusUrl": environ.get("STATUS_URL", "http://127.0.0.1:8093/"),
    }


def build() -> Path:
    """``web/dist/app.js``, bundled again by esbuild when a source is newer (under a second)."""
    bundle = WEB / "dist/app.js"
    esbuild = WEB / "node_modules/.bin/esbuild"
    newest = max((WEB / name).stat().st_mtime for name in SOURCES)
    if bundle.exists() and bundle.stat().st_mtime >= newest:
        return bundle
    if not esbuild.exists():
        raise RuntimeError(f"{esbuild} is missing: run `npm ci` in {WEB} (Node.js 20+), or `make web`")
    subprocess.run(["npm", "run", "--silent", "build"], cwd=WEB, check=True)
    return bundle


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, config: dict[str, str], **kwargs):
        self.config = config
        super().__init__(*args, directory=str(WEB), **kwargs)

    def refused(self) -> bool:
        try:
            ok = allowed(self.path)
        except UnicodeDecodeError:
            ok = False
        if not ok:
            self.send_error(404)
        return not ok

    def do_GET(self):
        if self.refused():
            return
        if urllib.parse.urlsplit(self.path).path == "/config.json":
            body = json.dumps(self.config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_HEAD(self):
        if not self.refused():
            super().do_HEAD()

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # one line per request on stderr, as the default, without the clutter
        print(f"web {self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5173)
    parser.add_argument("--upload-url", default=UPLOAD_URL, help=f"the upload function's URL (default {UPLOAD_URL})")
    args = parser.parse_args()
    build()
    handler = functools.partial(Handler, config=client_config(args.upload_url))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"web client on http://127.0.0.1:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
