"""APP_CHECK_REQUIRED: upload and status also verify X-Firebase-AppCheck with firebase-admin (off by default).

Tokens are signed here with a local RSA key that stands in for App Check's published keys; firebase-admin's own
verification (signature, algorithm, audience, issuer, expiry) runs unchanged.
"""

import time
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import app_check

from shared import config
from shared.auth import TokenVerifier
from shared.errors import ServiceError

PROJECT = "demo-skin"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def app_check_token(key=KEY, audience=f"projects/{PROJECT}", lifetime_s=3600, **header) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://firebaseappcheck.googleapis.com/123456789",
        "sub": "1:123456789:web:abc",
        "aud": ["projects/123456789", audience],
        "iat": now,
        "exp": now + lifetime_s,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test", "typ": "JWT", **header})


@pytest.fixture
def verifier(monkeypatch):
    """A verifier that requires App Check, with the App Check public key served from here, not Google."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    verifier = TokenVerifier(PROJECT, emulator=True, app_check=True)
    service = app_check._get_app_check_service(verifier.app)
    monkeypatch.setattr(
        service._jwks_client, "get_signing_key_from_jwt", lambda token: SimpleNamespace(key=KEY.public_key())
    )
    monkeypatch.setattr(verifier, "_id_token_uid", lambda header: "alice")  # ID tokens: tests/unit/test_auth.py
    return verifier


def test_off_by_default_and_locally():
    assert config.load({}).APP_CHECK_REQUIRED is False
    assert config.load({"APP_CHECK_REQUIRED": "true"}).APP_CHECK_REQUIRED is True


def test_a_valid_app_check_token_passes(verifier):
    assert verifier.uid("Bearer x", app_check_token()) == "alice"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "garbage",
        "a.b.c",
        app_check_token(key=OTHER_KEY),  # not signed by App Check
        app_check_token(audience="projects/another"),  # another project's app
        app_check_token(lifetime_s=-60),  # expired
    ],
)
def test_a_missing_or_bad_app_check_token_is_401(verifier, token):
    with pytest.raises(ServiceError) as caught:
        verifier.uid("Bearer x", token)
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"
    assert "App Check" in caught.value.message


def test_not_checked_when_not_required(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    verifier = TokenVerifier(PROJECT, emulator=True)
    monkeypatch.setattr(verifier, "_id_token_uid", lambda header: "alice")
    assert verifier.uid("Bearer x", None) == "alice"


def test_the_functions_pass_the_header_and_cors_allows_it():
    from pathlib import Path

    from shared import http

    repo = Path(__file__).resolve().parents[2]
    for name in ("upload", "status"):
        assert 'request.headers.get("X-Firebase-AppCheck")' in (repo / f"functions/{name}/main.py").read_text()
    assert "X-Firebase-AppCheck" in http.ALLOWED_HEADERS
