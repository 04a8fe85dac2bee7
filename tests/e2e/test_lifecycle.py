"""A job's life on the real local stack: what the owner can read of it under the security rules, a new task for
each run (after DELETE, after `failed`), and the sweep that ends the jobs nobody will finish."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading

import pytest
import requests

from tests.conftest import REPO, contract_job_fields

CONTRACT_FIELDS = contract_job_fields()  # ../shared/API.md: the job document holds these and no others


def rest_get(api, path: str, uid: str) -> requests.Response:
    """A client SDK's read of a document, over the emulator's REST API, as ``uid``: the security rules apply."""
    base = f"http://{api.env['FIRESTORE_EMULATOR_HOST']}/v1/projects/{api.project}/databases/(default)/documents"
    return requests.get(base + path, headers=api.auth(uid), timeout=10)


def owner_sees(api, uid: str, job_id: str) -> set[str]:
    reply = rest_get(api, f"/jobs/{job_id}", uid)
    assert reply.status_code == 200, reply.text
    return set(reply.json()["fields"])


def worker_state(api, job_id: str) -> dict:
    return api.db.collection("jobs").document(job_id).collection("private").document("worker").get().to_dict() or {}


@pytest.mark.slow
def test_the_owner_reads_contract_fields_only_and_a_failed_job_starts_again_with_its_key(api, sharp_jpeg):
    uid, key = "lifecycle", "restart-1"
    fields_seen: list[set[str]] = []
    api.pause_queue()
    try:
        job_id = api.upload(uid, sharp_jpeg, key=key).json()["jobId"]
        watch = (
            api.db.collection("jobs")
            .document(job_id)
            .on_snapshot(
                lambda snapshots, changes, read_time: fields_seen.extend(set(s.to_dict() or {}) for s in snapshots)
            )
        )
        fields_seen.append(owner_sees(api, uid, job_id))
        api.stack.stop("storage")  # a retryable failure: the delivery takes the lease, then hands the job back
        try:
            assert api.deliver(job_id, retry_count=0).status_code == 503
        finally:
            api.stack.start("storage")  # in memory: it comes back empty, the photo is gone
        fields_seen.append(owner_sees(api, uid, job_id))
        assert worker_state(api, job_id)["lastError"]["code"] == "unavailable"
        assert rest_get(api, f"/jobs/{job_id}/private/worker", uid).status_code == 403
    finally:
        api.resume_queue()
    failed = api.wait(uid, job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "image_missing"

    again = api.upload(uid, sharp_jpeg, key=key)
    assert again.status_code == 202 and again.json()["jobId"] == job_id and again.json()["status"] == "queued"
    done = api.wait(uid, job_id)
    assert done["status"] == "done" and "error" not in done and done["attempts"] == 1
    fields_seen.append(owner_sees(api, uid, job_id))
    watch.unsubscribe()
    assert len(fields_seen) > 4 and all(fields <= CONTRACT_FIELDS for fields in fields_seen), fields_seen


def test_reupload_after_delete_with_the_same_key_ends_done(api, sharp_jpeg):
    uid, key = "again", "same-key"
    job_id = api.upload(uid, sharp_jpeg, key=key).json()["jobId"]
    assert api.wait(uid, job_id)["status"] == "done"
    nonce = worker_state(api, job_id)["taskNonce"]
    assert requests.delete(api.url["status"] + job_id, headers=api.auth(uid), timeout=10).status_code == 204
    assert rest_get(api, f"/jobs/{job_id}/private/worker", uid).status_code in (403, 404)
    assert not api.db.collection("jobs").document(job_id).collection("private").document("worker").get().exists
    again = api.upload(uid, sharp_jpeg, key=key)
    assert again.status_code == 202 and again.json()["jobId"] == job_id
    assert worker_state(api, job_id)["taskNonce"] != nonce, "a new task name: Cloud Tasks keeps the old one reserved"
    assert api.wait(uid, job_id)["status"] == "done"


def test_make_sweep_fails_the_jobs_nobody_will_finish(api, sharp_jpeg):
    uid = "swept"
    api.pause_queue()
    try:
        stale, fresh = (api.upload(uid, sharp_jpeg).json()["jobId"] for _ in range(2))
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        api.db.collection("jobs").document(stale).update({"updatedAt": long_ago})  # the queue gave up on it
        seen = threading.Event()
        watch = (
            api.db.collection("jobs")
            .document(stale)
            .on_snapshot(
                lambda snapshots, changes, read_time: (
                    any(s.to_dict()["status"] == "failed" for s in snapshots) and seen.set()
                )
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "devstack.sweep"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "SWEEP_PORT": api.stack.s["SWEEP_PORT"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert seen.wait(10), "the owner's listener never saw the job end"
        watch.unsubscribe()
        report = done.stdout
        assert '"failed": 1' in report, report
        for job_id, expected in ((stale, "failed"), (fresh, "queued")):
            reply = rest_get(api, f"/jobs/{job_id}", uid)
            assert reply.json()["fields"]["status"]["stringValue"] == expected
    finally:
        api.resume_queue()
    assert api.wait(uid, fresh)["status"] == "done"
    assert requests.get(api.url["sweep"], timeout=10).status_code == 405


def test_a_spent_quota_answers_429_before_the_photo_is_decoded(api, sharp_jpeg):
    """A photo whose header passes and whose pixels would not decode: with the quota spent, 429 (nothing was
    decoded); before the quota came first it was a 400 invalid_image, after decoding it."""
    uid, limit = "quota-first", 60
    window = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    api.db.collection("quotas").document(uid).set(
        {"window": window, "count": limit, "expireAt": window + dt.timedelta(hours=2)}
    )
    before = api.counts()
    truncated = sharp_jpeg[: len(sharp_jpeg) // 2]
    refused = api.upload(uid, truncated)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited", refused.text
    pdf = api.upload(uid, b"%PDF-1.7\n%%EOF", content_type="application/pdf")  # refused from the bytes alone
    assert pdf.status_code == 415
    assert api.counts() == before
