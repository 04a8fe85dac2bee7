"""Firebase ID token verification (``firebase_admin.auth.verify_id_token``) for upload and status."""

from __future__ import annotations

import base64
import json
import re
import time

import firebase_admin
from firebase_admin import auth, credentials
from google.auth.credentials import AnonymousCredentials

from shared.errors import ServiceError

UID = re.compile(r"^[A-Za-z0-9_:@.-]{1,128}$")
CLOCK_SKEW_S = 60


def _jwt_header(token: str) -> dict:
    """The decoded JWT header; {} when it is not JSON."""
    try:
        segment = token.split(".")[0]
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class _Anonymous(credentials.Base):
    """firebase-admin needs a credential object even where the emulator ignores it."""

    def get_credential(self):
        return AnonymousCredentials()


def unauthenticated(message: str = "Sign in again: send a valid Firebase ID token as 'Authorization: Bearer <token>'."):
    return ServiceError(401, "unauthenticated", message, {"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    def __init__(self, project: str, emulator: bool):
        if emulator and not project.startswith("demo-"):
            raise RuntimeError(
                f"FIREBASE_AUTH_EMULATOR_HOST is set while GOOGLE_CLOUD_PROJECT={project!r} is not a "
                "demo- project: refusing to accept unsigned tokens for a real project."
            )
        self.emulator = emulator
        credential = _Anonymous() if emulator else None
        name = f"skin-{project}-{'emulator' if emulator else 'live'}"
        try:
            self.app = firebase_admin.get_app(name)
        except ValueError:
            self.app = firebase_admin.initialize_app(credential, {"projectId": project}, name=name)

    def uid(self, authorization: str | None) -> str:
        """The verified uid of ``Authorization: Bearer <token>``; 401 for anything else."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated()
        token = token.strip()
        if not self.emulator and _jwt_header(token).get("alg") != "RS256":
            raise unauthenticated()  # unsigned (emulator) tokens only count in emulator mode
        try:
            claims = auth.verify_id_token(token, app=self.app)
        except (auth.ExpiredIdTokenError, auth.RevokedIdTokenError):
            raise unauthenticated("The ID token has expired; refresh it and try again.") from None
        except (auth.InvalidIdTokenError, auth.CertificateFetchError, ValueError):
            raise unauthenticated() from None
        now = time.time()  # the emulator path of firebase-admin skips the time checks: do them here
        if not (
            isinstance(claims.get("exp"), (int, float))
            and claims["exp"] > now - CLOCK_SKEW_S
            and isinstance(claims.get("iat"), (int, float))
            and claims["iat"] <= now + CLOCK_SKEW_S
        ):
            raise unauthenticated("The ID token has expired or is not valid yet; refresh it and try again.")
        uid = claims.get("uid") or claims.get("sub")
        if not uid or not UID.match(uid) or set(uid) <= {"."}:
            raise unauthenticated()
        return uid
