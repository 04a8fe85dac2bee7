"""APP_CHECK_REQUIRED: upload and status also verify X-Firebase-AppCheck with firebase-admin (off by default).

Tokens are signed here with a local RSA key that stands in for App Check's published keys; firebase-admin's own
verification (signature, algorithm, audience, issuer, expiry) runs unchanged.
"""

import importlib.util
import json
import time
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import app_check
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shared import bootstrap, config, http
from shared.auth import TokenVerifier
from shared.errors import ServiceError
from tests.fakes import fake_deps

REPO = Path(__file__).resolve().parents[2]

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
    assert caught.value.status == 401 and caught.value.code == "app_not_verified"  # not the user's sign-in
    assert "App Check" in caught.value.message


def test_not_checked_when_not_required(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    verifier = TokenVerifier(PROJECT, emulator=True)
    monkeypatch.setattr(verifier, "_id_token_uid", lambda header: "alice")
    assert verifier.uid("Bearer x", None) == "alice"


def load_function(name: str, deps):
    """functions/<name>/main.py, imported with ``deps`` in place of the environment's dependencies."""
    spec = importlib.util.spec_from_file_location(f"app_check_{name}_main", REPO / f"functions/{name}/main.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bootstrap, "dependencies", lambda: deps)
        spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.parametrize("name, method", [("upload", "POST"), ("status", "GET"), ("status", "DELETE")])
def test_upload_and_status_refuse_a_request_without_app_check_when_required(verifier, name, method):
    deps = fake_deps(APP_CHECK_REQUIRED="true")
    deps.tokens = verifier
    function = load_function(name, deps)
    path = "/" if name == "upload" else "/0123456789abcdef01234567"
    without = function(
        Request(EnvironBuilder(path=path, method=method, headers={"Authorization": "Bearer x"}).get_environ())
    )
    assert without[1] == 401 and "App Check" in json.loads(without[0])["error"]["message"]
    headers = {"Authorization": "Bearer x", "X-Firebase-AppCheck": app_check_token()}
    answer = function(Request(EnvironBuilder(path=path, method=method, headers=headers).get_environ()))
    assert answer[1] == (400 if name == "upload" else 404)  # past the checks: no photo / no such job


def test_cors_allows_the_header():
    assert "X-Firebase-AppCheck" in http.ALLOWED_HEADERS


@pytest.mark.parametrize("setting, required", [("true", True), ("false", False)])
def test_bootstrap_wires_the_setting_into_the_verifier(monkeypatch, setting, required):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")
    deps = fake_deps(APP_CHECK_REQUIRED=setting, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9")
    assert deps.tokens.app_check_required is required
