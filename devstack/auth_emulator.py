"""The Firebase Auth emulator of the local stack (npm ``firebase-tools``) and a small client of its REST API.

The demo, the benchmark and the end-to-end tests sign users in here and send the ID tokens it issues, as an
app would: ``accounts:signInWithPassword?key=fake`` (any API key is accepted by the emulator).

    python -m devstack.auth_emulator token UID   # prints an ID token of UID, creating the user if needed
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIREBASE = REPO / "node_modules/.bin/firebase"
PASSWORD = "local-stack-password"  # every user the local tooling creates has it; the emulator is local only
IDENTITY = "identitytoolkit.googleapis.com/v1"


def config_file(folder: Path, port: int, hub_port: int, logging_port: int) -> Path:
    """firebase.json for one Auth emulator: the repository's file with this stack's ports (UI off: no download)."""
    config = json.loads((REPO / "firebase.json").read_text())
    emulators = config["emulators"]
    emulators["auth"] = {"host": "127.0.0.1", "port": port}
    emulators["hub"] = {"host": "127.0.0.1", "port": hub_port}
    emulators["logging"] = {"host": "127.0.0.1", "port": logging_port}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "firebase.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def command(config: Path, project: str) -> list[str]:
    if not FIREBASE.exists():
        raise RuntimeError(f"{FIREBASE} is missing: run `npm ci` in {REPO} (Node.js 20+) to install firebase-tools")
    return [str(FIREBASE), "emulators:start", "--only", "auth", "--project", project, "--config", str(config)]


def environment(folder: Path) -> dict[str, str]:
    """Keeps the emulator's hub locator and logs in the stack's folder, and stops it from phoning home."""
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "TMPDIR": str(folder / "tmp"),
        "NO_UPDATE_NOTIFIER": "1",
        "FIREBASE_CLI_DISABLE_UPDATE_CHECK": "true",
        "XDG_CONFIG_HOME": str(folder / "config"),
    }


def _call(host: str, path: str, body: dict, admin: bool = False) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": "Bearer owner"} if admin else {})}
    request = urllib.request.Request(
        f"http://{host}/{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise AuthError(exc.code, error_message(exc.read().decode(errors="replace"))) from None


def error_message(body: str) -> str:
    """The emulator's ``{"error": {"message": ...}}``, or the body as it is when it is not that JSON (a proxy's
    HTML page, an empty body)."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.strip() or "(empty answer)"
    return message if isinstance(message, str) else json.dumps(message)


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status} {message}")
        self.status, self.message = status, message


def sign_up(host: str, project: str, uid: str, email: str | None = None) -> None:
    """Create the user ``uid`` (as the Admin SDK would; the emulator accepts the owner token); no-op if it exists."""
    body = {"localId": uid, "email": email or f"{uid}@example.com", "password": PASSWORD}
    try:
        _call(host, f"{IDENTITY}/projects/{project}/accounts", body, admin=True)
    except AuthError as exc:
        if "DUPLICATE" not in exc.message and "EXISTS" not in exc.message:
            raise


def sign_in(host: str, email: str, password: str = PASSWORD) -> dict:
    """``accounts:signInWithPassword``, as the client SDKs do: the reply has ``idToken`` and ``localId``."""
    return _call(
        host,
        f"{IDENTITY}/accounts:signInWithPassword?key=fake",
        {"email": email, "password": password, "returnSecureToken": True},
    )


def id_token(host: str, project: str, uid: str) -> str:
    """An ID token of ``uid`` issued by the emulator, creating the user first when needed."""
    sign_up(host, project, uid)
    return sign_in(host, f"{uid}@example.com")["idToken"]


def update(host: str, project: str, uid: str, **fields) -> None:
    """Change a user as the Admin SDK does: ``disableUser=True``, ``validSince="<epoch s>"`` (revokes tokens)."""
    _call(host, f"{IDENTITY}/projects/{project}/accounts:update", {"localId": uid, **fields}, admin=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "token":
        print(__doc__)
        sys.exit(2)
    print(
        id_token(
            os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
            os.environ.get("GOOGLE_CLOUD_PROJECT", "demo-skin"),
            sys.argv[2],
        )
    )
