"""Mint the unsigned ID tokens the Firebase Auth emulator issues, for the demo and the tests.

python -m shared.tokens UID   # prints a token valid for an hour
"""

from __future__ import annotations

import base64
import json
import sys
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


if __name__ == "__main__":
    print(emulator_token(sys.argv[1] if len(sys.argv) > 1 else "demo-user"))
