"""Firebase ID tokens: the emulator's unsigned tokens are accepted only in emulator mode, and only when valid."""

import base64
import json
import time

import pytest

from shared.auth import TokenVerifier
from shared.errors import ServiceError
from shared.tokens import emulator_token

PROJECT = "demo-skin"


@pytest.fixture
def emulator_mode(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    return TokenVerifier(PROJECT, emulator=True)


def refused(verifier: TokenVerifier, header: str | None) -> None:
    with pytest.raises(ServiceError) as caught:
        verifier.uid(header)
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"


def test_valid_emulator_token(emulator_mode):
    assert emulator_mode.uid(f"Bearer {emulator_token('alice', PROJECT)}") == "alice"


def forged(**claims) -> str:
    segment = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6cHc=",
        "Bearer garbage",
        "Bearer a.b.c",
        f"Bearer {emulator_token('alice', PROJECT, lifetime_s=-120)}",  # expired
        f"Bearer {emulator_token('alice', PROJECT, aud='another-project')}",  # wrong audience
        f"Bearer {emulator_token('alice', PROJECT, iss='https://evil.example/x')}",  # wrong issuer
        f"Bearer {emulator_token('alice', PROJECT, sub=None, user_id=None)}",  # no subject
        f"Bearer {emulator_token('../..', PROJECT)}",  # a uid that is a path
        f"Bearer {forged(iss='https://securetoken.google.com/demo-skin', aud='demo-skin', sub='x', iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)}",  # issued in the future
    ],
)
def test_bad_tokens_are_401(emulator_mode, header):
    refused(emulator_mode, header)


def test_unsigned_token_is_refused_outside_emulator_mode(monkeypatch):
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    refused(TokenVerifier(PROJECT, emulator=False), f"Bearer {emulator_token('alice', PROJECT)}")


def test_emulator_mode_on_a_real_project_refuses_to_start(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(RuntimeError, match="demo-"):
        TokenVerifier("my-production-project", emulator=True)
