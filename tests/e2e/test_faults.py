"""Faults: the real emulators and processes are stopped, frozen or killed while jobs run; nothing is lost and no
job is left unfinished. (Restarting an in-memory emulator empties it, so each test makes its own jobs.)"""

from __future__ import annotations

import os
import signal
import time

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

pytestmark = pytest.mark.slow


def upload_until_accepted(api, uid: str, data: bytes, key: str, timeout: float = 60):
    """What a client does with 503 + Retry-After: retry with the same Idempotency-Key."""
    deadline = time.monotonic() + timeout
    while True:
        reply = api.upload(uid, data, key=key)
        if reply.status_code != 503 or time.monotonic() > deadline:
            return reply
        time.sleep(min(1.0, float(reply.headers["Retry-After"])))


def job_docs(api, uid: str) -> list[dict]:
    return [
        doc.to_dict() for doc in api.db.collection("jobs").where(filter=FieldFilter("ownerUid", "==", uid)).stream()
    ]


@pytest.mark.parametrize("part", ["storage", "tasks", "firestore"])
def test_a_dependency_down_during_upload_gives_503_and_the_same_key_completes_later(api, sharp_jpeg, part):
    uid = f"fault-{part}"
    api.stack.stop(part)
    try:
        down = api.upload(uid, sharp_jpeg, key="k1")
        assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
        assert int(down.headers["Retry-After"]) > 0
        without_key = api.upload(uid, sharp_jpeg)
        assert without_key.status_code == 503
    finally:
        api.stack.start(part)
    # without a key nothing may stay behind; with a key at most the queued job that the retry resumes
    if part != "firestore":  # a restarted Firestore emulator is empty anyway
        assert [doc["status"] for doc in job_docs(api, uid)] == (["queued"] if part == "tasks" else [])
    if part == "storage":
        assert not list(api.bucket.list_blobs(prefix=f"uploads/{uid}/"))
    again = upload_until_accepted(api, uid, sharp_jpeg, key="k1")
    assert again.status_code in (200, 202), again.text
    job = api.wait(uid, again.json()["jobId"])
    assert job["status"] == "done"
    assert len(job_docs(api, uid)) == 1
    assert len(list(api.bucket.list_blobs(prefix=f"uploads/{uid}/"))) == 1


def test_infer_killed_in_the_middle_of_a_job_still_ends_done(api, sharp_jpeg):
    storage_pid = api.stack._pids()["storage"]
    api.pause_queue()
    job_id = api.upload("crash", sharp_jpeg).json()["jobId"]
    os.killpg(storage_pid, signal.SIGSTOP)  # infer will hang downloading the photo, job claimed
    try:
        api.resume_queue()
        deadline = time.monotonic() + 30
        while api.db.collection("jobs").document(job_id).get().to_dict()["status"] != "processing":
            assert time.monotonic() < deadline, "infer never claimed the job"
            time.sleep(0.05)
        os.killpg(api.stack._pids()["infer"], signal.SIGKILL)  # a crash, not a graceful stop
        api.pause_queue()  # keep the emulator, which retries at once, from spending every attempt meanwhile
    finally:
        os.killpg(storage_pid, signal.SIGCONT)
    api.stack.start("infer")
    api.resume_queue()
    job = api.wait("crash", job_id, timeout=120)
    assert job["status"] == "done" and job["attempts"] >= 2


def test_infer_failing_on_every_attempt_ends_failed_after_max_attempts(api, sharp_jpeg):
    max_attempts = int(api.stack.s["MAX_ATTEMPTS"])
    api.pause_queue()
    job_id = api.upload("doomed", sharp_jpeg).json()["jobId"]
    api.stack.stop("storage")
    try:
        api.resume_queue()
        job = api.wait("doomed", job_id, timeout=180)
    finally:
        api.stack.start("storage")
    assert job["status"] == "failed" and job["attempts"] == max_attempts
    assert job["error"]["code"] == "unavailable" and "result" not in job


def test_the_last_attempt_writes_failed_instead_of_asking_for_a_retry(api, sharp_jpeg):
    max_attempts = int(api.stack.s["MAX_ATTEMPTS"])
    api.pause_queue()
    job_id = api.upload("last", sharp_jpeg).json()["jobId"]
    api.stack.stop("storage")
    try:
        early = api.deliver(job_id, retry_count=0)
        assert early.status_code == 503 and api.status("last", job_id).json()["status"] == "queued"
        last = api.deliver(job_id, retry_count=max_attempts - 1)
        assert last.status_code == 200 and last.json()["status"] == "failed"
    finally:
        api.stack.start("storage")
        api.resume_queue()
    job = api.wait("last", job_id)
    assert job["status"] == "failed" and job["attempts"] == 2
