"""Firebase ID tokens: the emulator's unsigned tokens are accepted only in emulator mode, and only when valid."""

import base64
import json
import time

import pytest

from shared.auth import CLOCK_SKEW_S, TokenVerifier
from shared.errors import ServiceError
from tests.tokens import emulator_token

PROJECT = "demo-skin"


@pytest.fixture
def emulator_mode(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")  # unreachable: unit tests run no emulator
    return TokenVerifier(PROJECT, emulator=True)


def refused(verifier: TokenVerifier, header: str | None) -> None:
    with pytest.raises(ServiceError) as caught:
        verifier.uid(header)
    assert caught.value.status == 401 and caught.value.code == "unauthenticated"


def test_a_valid_token_is_checked_for_revocation(emulator_mode, monkeypatch):
    """check_revoked=True looks the user up; with the Auth service unreachable that is 503 (retry), not 401."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    verifier = TokenVerifier(PROJECT, emulator=True)
    with pytest.raises(ServiceError) as caught:
        verifier.uid(f"Bearer {emulator_token('alice', PROJECT)}")
    assert caught.value.status == 503 and caught.value.code == "unavailable"


@pytest.mark.parametrize("skew_s, accepted", [(5, True), (-5, True), (CLOCK_SKEW_S + 20, False)])
def test_a_few_seconds_of_clock_skew_on_iat_are_tolerated(emulator_mode, skew_s, accepted):
    """A token issued by a clock a few seconds ahead is not 'used too early'; one far ahead is refused."""
    now = int(time.time())
    token = forged(
        iss=f"https://securetoken.google.com/{PROJECT}",
        aud=PROJECT,
        sub="alice",
        user_id="alice",
        iat=now + skew_s,
        auth_time=now + skew_s,
        exp=now + 3600,
    )
    with pytest.raises(ServiceError) as caught:
        emulator_mode.uid(f"Bearer {token}")
    # accepted: it got as far as the revocation check (no emulator here, hence 503); refused: 401 before it
    assert caught.value.status == (503 if accepted else 401)


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
