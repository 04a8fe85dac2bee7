"""Access: Firestore rules for clients, tokens, CORS and the per-user upload quota, on the real emulators."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests

from devstack import auth_emulator
from tests.e2e.conftest import ALLOWED_ORIGIN
from tests.tokens import emulator_token


@pytest.fixture(scope="module")
def owned_job(api, sharp_jpeg) -> str:
    job_id = api.upload("rita", sharp_jpeg).json()["jobId"]
    api.wait("rita", job_id)
    return job_id


def rest(api, method: str, path: str, uid: str | None, **kwargs) -> requests.Response:
    """A client SDK's call to Firestore, over the emulator's REST API, as uid (None: signed out)."""
    base = f"http://{api.env['FIRESTORE_EMULATOR_HOST']}/v1/projects/{api.project}/databases/(default)/documents"
    headers = api.auth(uid) if uid else {}
    return requests.request(method, base + path, headers=headers, timeout=10, **kwargs)


def owner_query(uid_filter: str | None) -> dict:
    query = {"from": [{"collectionId": "jobs"}]}
    if uid_filter:
        query["where"] = {
            "fieldFilter": {"field": {"fieldPath": "ownerUid"}, "op": "EQUAL", "value": {"stringValue": uid_filter}}
        }
    return {"structuredQuery": query}


def test_rules_let_only_the_owner_read(api, owned_job):
    assert rest(api, "GET", f"/jobs/{owned_job}", "rita").status_code == 200
    assert rest(api, "GET", f"/jobs/{owned_job}", "mallory").status_code == 403
    assert rest(api, "GET", f"/jobs/{owned_job}", None).status_code == 403


def test_rules_allow_listing_only_ones_own_jobs(api, owned_job):
    mine = rest(api, "POST", ":runQuery", "rita", json=owner_query("rita"))
    assert mine.status_code == 200 and any(owned_job in row.get("document", {}).get("name", "") for row in mine.json())
    assert rest(api, "POST", ":runQuery", "rita", json=owner_query(None)).status_code == 403
    assert rest(api, "POST", ":runQuery", "mallory", json=owner_query("rita")).status_code == 403
    assert rest(api, "POST", ":runQuery", None, json=owner_query("rita")).status_code == 403


@pytest.mark.parametrize("uid", ["rita", "mallory", None])
def test_rules_deny_every_client_write(api, owned_job, uid):
    fields = {"fields": {"status": {"stringValue": "done"}, "ownerUid": {"stringValue": uid or "x"}}}
    assert rest(api, "PATCH", f"/jobs/{owned_job}", uid, json=fields).status_code == 403
    assert rest(api, "DELETE", f"/jobs/{owned_job}", uid).status_code == 403
    assert rest(api, "POST", "/jobs?documentId=forged0000000000", uid, json=fields).status_code == 403
    assert rest(api, "POST", "/quotas?documentId=forged", uid, json=fields).status_code == 403
    assert api.status("rita", owned_job).json()["status"] == "done"


def test_expired_and_foreign_tokens_are_401_on_status(api, owned_job):
    for token in (emulator_token("rita", api.project, lifetime_s=-300), emulator_token("rita", "demo-other"), "x.y.z"):
        reply = requests.get(api.url["status"] + owned_job, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthenticated"


def test_a_disabled_user_is_401_on_upload_and_status(api, owned_job, sharp_jpeg):
    token = api.token("dora")  # signed in on the Auth emulator before the account is disabled
    job_id = api.upload("dora", sharp_jpeg).json()["jobId"]
    auth_emulator.update(api.auth_host, api.project, "dora", disableUser=True)
    headers = {"Authorization": f"Bearer {token}"}
    for reply in (
        requests.get(api.url["status"] + job_id, headers=headers, timeout=10),
        requests.post(api.url["upload"], files={"image": ("p", sharp_jpeg)}, headers=headers, timeout=30),
    ):
        assert reply.status_code == 401 and reply.json()["error"] == {
            "code": "unauthenticated",
            "message": "This account is disabled.",
        }
    with pytest.raises(auth_emulator.AuthError, match="USER_DISABLED"):
        auth_emulator.sign_in(api.auth_host, "dora@example.com")


def test_a_revoked_token_is_401_and_a_fresh_sign_in_works(api, owned_job, sharp_jpeg):
    old = api.token("ravi")
    job_id = api.upload("ravi", sharp_jpeg).json()["jobId"]
    time.sleep(1.1)  # revocation counts whole seconds: tokens issued before validSince are revoked
    auth_emulator.update(api.auth_host, api.project, "ravi", validSince=str(int(time.time())))
    reply = requests.get(api.url["status"] + job_id, headers={"Authorization": f"Bearer {old}"}, timeout=10)
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthenticated"
    assert "revoked" in reply.json()["error"]["message"]
    api.forget_tokens()
    assert api.status("ravi", job_id).status_code == 200


def test_cors_preflight_and_allow_list(api):
    allowed = requests.options(
        api.url["upload"],
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key",
        },
        timeout=10,
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Idempotency-Key" in allowed.headers["Access-Control-Allow-Headers"]
    refused = requests.options(
        api.url["status"],
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    plain = requests.get(
        api.url["status"] + "0123456789abcdef01234567",
        headers={**api.auth("rita"), "Origin": "https://evil.example"},
        timeout=10,
    )
    assert (
        "Access-Control-Allow-Origin" not in plain.headers and plain.headers.get("Access-Control-Allow-Origin") != "*"
    )
    # the answer depends on the Origin, allowed or not: caches must key on it
    assert refused.headers["Vary"] == plain.headers["Vary"] == allowed.headers["Vary"] == "Origin"


def test_upload_quota_holds_in_firestore_and_answers_429(api, sharp_jpeg):
    limit = 60
    now = dt.datetime.now(dt.UTC)
    window = now.replace(minute=0, second=0, microsecond=0)
    # as if other instances had taken all but one upload this hour
    api.db.collection("quotas").document("quinn").set(
        {"window": window, "count": limit - 1, "expireAt": window + dt.timedelta(hours=2)}
    )
    assert api.upload("quinn", sharp_jpeg).status_code == 202
    before = api.counts()
    refused = api.upload("quinn", sharp_jpeg)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert api.counts()[:2] == before[:2]
    assert api.upload("not-quinn", sharp_jpeg).status_code == 202


def test_methods_other_than_documented_are_405(api):
    assert requests.get(api.url["upload"], headers=api.auth("rita"), timeout=10).status_code == 405
    reply = requests.put(api.url["status"] + "abcdefgh", headers=api.auth("rita"), timeout=10)
    assert reply.status_code == 405 and reply.json()["error"]["code"] == "method_not_allowed"
    queue = {"X-CloudTasks-QueueName": "infer"}
    reply = requests.get(api.url["infer"], params={"jobId": "abcdefgh"}, headers=queue, timeout=10)
    assert reply.status_code == 405 and reply.json()["error"]["code"] == "method_not_allowed"
