"""Firebase ID token (and optional App Check token) verification for upload and status.

ID tokens go through ``firebase_admin.auth.verify_id_token(..., check_revoked=True)``: a revoked token or a
disabled user is refused. Locally the Firebase Auth emulator answers the revocation check.
"""

from __future__ import annotations

import base64
import json
import re
import time

import firebase_admin
import jwt
from firebase_admin import app_check, auth, credentials, exceptions
from google.auth.credentials import AnonymousCredentials

from shared.errors import ServiceError, Unavailable

UID = re.compile(r"[A-Za-z0-9_:@.-]{1,128}")  # matched in full: no trailing newline slips through
CLOCK_SKEW_S = 10  # tolerated difference between our clock and the token issuer's, on iat and exp


def _jwt_part(token: str, index: int) -> dict:
    """A decoded JWT segment (0: header, 1: claims), unverified; {} when it is not JSON."""
    try:
        segment = token.split(".")[index]
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _current(claims: dict, now: float) -> bool:
    """exp not passed and iat not in the future, each with CLOCK_SKEW_S of tolerance."""
    exp, iat = claims.get("exp"), claims.get("iat")
    return (
        isinstance(exp, (int, float))
        and exp > now - CLOCK_SKEW_S
        and isinstance(iat, (int, float))
        and iat <= now + CLOCK_SKEW_S
    )


def _valid_uid(uid: object) -> bool:
    """A uid that can name a Storage folder: no path tricks."""
    return isinstance(uid, str) and UID.fullmatch(uid) is not None and not set(uid) <= {"."}


class _Anonymous(credentials.Base):
    """firebase-admin needs a credential object even where the emulator ignores it."""

    def get_credential(self):
        return AnonymousCredentials()


def unauthenticated(message: str = "Sign in again: send a valid Firebase ID token as 'Authorization: Bearer <token>'."):
    return ServiceError(401, "unauthenticated", message, {"WWW-Authenticate": "Bearer"})


def app_not_verified(message: str) -> ServiceError:
    """401 for the App Check token, with its own code: the app refreshes that token, not the user's sign-in."""
    return ServiceError(401, "app_not_verified", message, {"WWW-Authenticate": "Bearer"})


class TokenVerifier:
    """The caller of upload and status: a Firebase ID token, and an App Check token where ``app_check`` is on."""

    def __init__(self, project: str, emulator: bool, app_check: bool = False):
        if emulator and not project.startswith("demo-"):
            raise RuntimeError(
                f"FIREBASE_AUTH_EMULATOR_HOST is set while GOOGLE_CLOUD_PROJECT={project!r} is not a "
                "demo- project: refusing to accept unsigned tokens for a real project."
            )
        self.emulator = emulator
        self.app_check_required = app_check
        credential = _Anonymous() if emulator else None
        name = f"skin-{project}-{'emulator' if emulator else 'live'}"
        try:
            self.app = firebase_admin.get_app(name)
        except ValueError:
            self.app = firebase_admin.initialize_app(credential, {"projectId": project}, name=name)

    def uid(self, authorization: str | None, app_check: str | None = None) -> str:
        """The verified uid of ``Authorization: Bearer <token>`` (and, where required, a valid ``app_check``
        token from ``X-Firebase-AppCheck``); 401 for anything else."""
        uid = self._id_token_uid(authorization)
        if self.app_check_required:
            self._verify_app_check(app_check)
        return uid

    def _id_token_uid(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated()
        token = token.strip()
        unverified = _jwt_part(token, 1)
        if not _valid_uid(unverified.get("sub")):
            raise unauthenticated()  # refused before the revocation check looks the user up
        if self.emulator:  # firebase-admin skips the time checks on the emulator's unsigned tokens: do them first
            if not _current(unverified, time.time()):
                raise unauthenticated("The ID token has expired or is not valid yet; refresh it and try again.")
        elif _jwt_part(token, 0).get("alg") != "RS256":
            raise unauthenticated()  # unsigned (emulator) tokens only count in emulator mode
        try:
            claims = auth.verify_id_token(token, app=self.app, check_revoked=True, clock_skew_seconds=CLOCK_SKEW_S)
        except (auth.ExpiredIdTokenError, auth.RevokedIdTokenError):
            raise unauthenticated("The ID token has expired or was revoked; sign in again.") from None
        except auth.UserDisabledError:
            raise unauthenticated("This account is disabled.") from None
        except auth.UserNotFoundError:
            raise unauthenticated("This account no longer exists; sign in again.") from None
        except (auth.InvalidIdTokenError, ValueError):
            raise unauthenticated() from None
        except (auth.CertificateFetchError, exceptions.FirebaseError):
            raise Unavailable("Sign-in verification") from None  # Google's keys or the user lookup failed
        uid = claims.get("uid") or claims.get("sub")
        if not _valid_uid(uid):
            raise unauthenticated()
        return uid

    def _verify_app_check(self, header: str | None) -> None:
        if not header or not header.strip():
            raise app_not_verified("This app is not verified: send an App Check token as 'X-Firebase-AppCheck'.")
        try:
            app_check.verify_token(header.strip(), app=self.app)
        except (ValueError, jwt.InvalidTokenError):
            raise app_not_verified("The App Check token is not valid; refresh it and try again.") from None
        except (jwt.PyJWKClientError, exceptions.FirebaseError):
            raise Unavailable("App Check verification") from None
