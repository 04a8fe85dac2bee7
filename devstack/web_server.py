"""Serve the reference web client (``web/``) on 127.0.0.1, with a ``config.json`` naming the local stack.

    python scripts/web_server.py --port 5173

The page reads ``config.json`` beside it to find the functions and the emulators; the addresses come from the
environment the stack gives this process (``UPLOAD_URL``, ``STATUS_URL``, ``FIRESTORE_EMULATOR_HOST``,
``FIREBASE_AUTH_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``). ``web/dist/app.js`` is built by ``make web``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
SOURCES = ("src/app.js", "src/render.js", "package-lock.json")


def client_config(environ=os.environ) -> dict[str, str]:
    auth = environ.get("FIREBASE_AUTH_EMULATOR_HOST", "")
    return {
        "projectId": environ.get("GOOGLE_CLOUD_PROJECT", "demo-skin"),
        "apiKey": environ.get("FIREBASE_API_KEY", "fake"),
        "authEmulator": f"http://{auth}" if auth else "",
        "firestoreEmulator": environ.get("FIRESTORE_EMULATOR_HOST", ""),
        "uploadUrl": environ.get("UPLOAD_URL", "http://127.0.0.1:8091/"),
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

    def do_GET(self):
        if self.path.split("?")[0] == "/config.json":
            body = json.dumps(self.config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.split("?")[0].startswith(("/node_modules", "/package")):
            self.send_error(404)
            return
        super().do_GET()

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # one line per request on stderr, as the default, without the clutter
        print(f"web {self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5173)
    parser.add_argument("--upload-url", help="the upload function's URL (default: UPLOAD_URL or the local stack's)")
    args = parser.parse_args()
    build()
    config = client_config()
    if args.upload_url:
        config["uploadUrl"] = args.upload_url
    handler = functools.partial(Handler, config=config)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"web client on http://127.0.0.1:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
