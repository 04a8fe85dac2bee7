"""Firebase ID token verification (``firebase_admin.auth.verify_id_token``) for upload and status."""

from __future__ import annotations

import re

import firebase_admin
from firebase_admin import auth, credentials
from google.auth.credentials import AnonymousCredentials

from shared.errors import ServiceError

UID = re.compile(r"^[A-Za-z0-9_:@.-]{1,128}$")


class _Anonymous(credentials.Base):
    """firebase-admin needs a credential object even where the emulator ignores it."""

    def get_credential(self):
        return AnonymousCredentials()


def unauthenticated(message: str = "Sign in again: send a valid Firebase ID token as 'Authorization: Bearer <token>'."):
    return ServiceError(401, "unauthenticated", message, {"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    def __init__(self, project: str, emulator: bool):
        if emulator and not project.startswith("demo-"):
            raise RuntimeError(f"FIREBASE_AUTH_EMULATOR_HOST is set while GOOGLE_CLOUD_PROJECT={project!r} is not a "
                               "demo- project: refusing to accept unsigned tokens for a real project.")
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
        try:
            claims = auth.verify_id_token(token.strip(), app=self.app)
        except (auth.ExpiredIdTokenError, auth.RevokedIdTokenError):
            raise unauthenticated("The ID token has expired; refresh it and try again.") from None
        except (auth.InvalidIdTokenError, auth.CertificateFetchError, ValueError):
            raise unauthenticated() from None
        uid = claims.get("uid") or claims.get("sub")
        if not uid or not UID.match(uid) or set(uid) <= {"."}:
            raise unauthenticated()
        return uid
