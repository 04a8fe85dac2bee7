"""Hand-minted tokens shaped like the Firebase Auth emulator's, for the tests that need a bad one (expired, for
another project, issued in the future...). Everything else signs in on the real Auth emulator
(``devstack/auth_emulator.py``)."""

from __future__ import annotations

import base64
import json
import time


def _segment(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


def emulator_token(uid: str, project: str = "demo-skin", lifetime_s: int = 3600, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "exp": now + lifetime_s,
        "auth_time": now,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    }
    payload.update(claims)
    payload = {key: value for key, value in payload.items() if value is not None}
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(payload)}."
