"""The main job through HTTP on the real local stack: upload → Cloud Tasks → infer → Firestore → status."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import config
from shared.domain import jobs
from shared.labels import MALIGNANT, group_of
from tests.conftest import REPO, contract_result_fields, real_phone_photos

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DIAGNOSES = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}


@pytest.fixture(scope="module")
def photo(sharp_jpeg) -> bytes:
    real = real_phone_photos()
    return real[0].read_bytes() if real else sharp_jpeg


def assert_prediction(prediction: dict, labels: set[str]) -> None:
    assert set(prediction["scores"]) == labels
    assert abs(sum(prediction["scores"].values()) - 1) < 1e-6
    assert prediction["label"] == max(prediction["scores"], key=prediction["scores"].get)
    assert prediction["confidence"] == pytest.approx(prediction["scores"][prediction["label"]])
    assert isinstance(prediction["model"], str) and prediction["model"]


def test_upload_to_done_with_every_field_of_the_contract(api, photo):
    reply = api.upload("alice", photo)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert set(body) == {"jobId", "status", "statusUrl"} and body["status"] == "queued"
    assert reply.headers["Location"] == body["statusUrl"] == api.url["status"] + body["jobId"]

    job = api.wait("alice", body["jobId"])
    assert job["status"] == "done", job
    assert job["ownerUid"] == "alice" and job["attempts"] >= 1
    for field in ("createdAt", "updatedAt", "expireAt"):
        assert RFC3339.match(job[field]), job[field]
    created, expire = (dt.datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("createdAt", "expireAt"))
    assert expire - created == dt.timedelta(days=30)
    image = job["image"]
    assert image["path"] == f"uploads/alice/{body['jobId']}.jpg" and image["contentType"] == "image/jpeg"
    blob = api.bucket.get_blob(image["path"])
    stored = blob.download_as_bytes()
    assert blob.content_type == "image/jpeg" and len(stored) == image["sizeBytes"]
    assert hashlib.sha256(stored).hexdigest() == image["sha256"]
    assert (image["width"], image["height"]) == (600, 450)

    result = job["result"]
    assert set(result) == contract_result_fields()
    assert set(result["quality"]) == {"ok", "blurScore", "blurThreshold", "width", "height"}
    assert result["quality"]["ok"] is True
    assert_prediction(result["binary"], {"benign", "malignant"})
    assert_prediction(result["diagnosis"], DIAGNOSES)
    assert_prediction(result["check"], DIAGNOSES)
    assert_prediction(result["reference"], DIAGNOSES)
    assessment = result["assessment"]
    assert set(assessment) == {"label", "confidence", "scores", "malignant", "models"}
    assert set(assessment["scores"]) == DIAGNOSES and abs(sum(assessment["scores"].values()) - 1) < 1e-6
    assert abs(assessment["malignant"] - sum(assessment["scores"][c] for c in MALIGNANT)) < 1e-6
    assert result["check"]["agrees"] == (group_of(result["check"]["label"]) == result["binary"]["label"])
    threshold = float(api.stack.environ.get("CONF_THRESHOLD", config.load({}).CONF_THRESHOLD))
    said = group_of(assessment["label"])
    assert result["conclusive"] == (
        assessment["confidence"] >= threshold
        and result["binary"]["label"] == said
        and group_of(result["reference"]["label"]) == said
    )
    manifest = json.loads((REPO / "models/manifest.json").read_text())["models"]
    for role in ("binary", "diagnosis", "check", "reference"):
        entry = result["models"][role]
        assert entry == {
            "name": manifest[role]["name"],
            "version": manifest[role]["version"],
            "sha256": manifest[role]["sha256"],
        }
    assert {"decode", "quality", "reference", "binary", "diagnosis", "check", "total"} <= set(result["timingsMs"])
    assert not {"leaseOwner", "leaseUntil", "lastError"} & set(job)


def test_blurred_photo_is_rejected_with_advice(api, blurred_jpeg):
    job_id = api.upload("bob", blurred_jpeg).json()["jobId"]
    job = api.wait("bob", job_id)
    assert job["status"] == "rejected" and job["rejection"]["code"] == "too_blurry"
    assert "again" in job["rejection"]["message"] and "result" not in job


def test_raw_body_upload_and_query_string_status(api, sharp_jpeg):
    reply = api.upload("carol", sharp_jpeg, multipart=False)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["jobId"]
    api.wait("carol", job_id)
    by_query = api.status("carol", f"?jobId={job_id}")
    assert by_query.status_code == 200 and by_query.json()["jobId"] == job_id


def test_same_idempotency_key_gives_the_same_job_once(api, sharp_jpeg):
    before = api.counts()
    first = api.upload("dave", sharp_jpeg, key="photo-2026-11-22-001")
    second = api.upload("dave", sharp_jpeg, key="photo-2026-11-22-001")
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["jobId"] == first.json()["jobId"]
    api.wait("dave", first.json()["jobId"])
    third = api.upload("dave", sharp_jpeg, key="photo-2026-11-22-001")
    assert third.status_code == 200 and third.json()["status"] == "done"
    other_user = api.upload("erin", sharp_jpeg, key="photo-2026-11-22-001")
    assert other_user.status_code == 202 and other_user.json()["jobId"] != first.json()["jobId"]
    api.wait("erin", other_user.json()["jobId"])
    after = api.counts()
    assert after[:2] == (before[0] + 2, before[1] + 2)


def test_another_users_job_and_unknown_jobs_are_404(api, sharp_jpeg):
    job_id = api.upload("frank", sharp_jpeg).json()["jobId"]
    api.wait("frank", job_id)
    for uid, name in (("mallory", job_id), ("frank", "0123456789abcdef01234567")):
        reply = api.status(uid, name)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    assert api.status("frank", job_id).status_code == 200


def test_a_listener_sees_queued_processing_done(api, sharp_jpeg):
    """What a frontend sees when it listens to jobs/{jobId} (paused queue: the listener starts first)."""
    api.pause_queue()
    try:
        job_id = api.upload("grace", sharp_jpeg).json()["jobId"]
        seen, finished = [], threading.Event()

        def on_snapshot(snapshots, changes, read_time):
            for snapshot in snapshots:
                status = snapshot.to_dict()["status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status in jobs.TERMINAL:
                    finished.set()

        watch = api.db.collection("jobs").document(job_id).on_snapshot(on_snapshot)
        time.sleep(0.5)
    finally:
        api.resume_queue()
    try:
        assert finished.wait(60), seen
    finally:
        watch.unsubscribe()
    assert seen == ["queued", "processing", "done"]


def written_results(api, job_id: str) -> int:
    lines = [json.loads(line) for line in api.infer_log().splitlines() if line.startswith("{")]
    return sum(1 for line in lines if line.get("jobId") == job_id and line.get("written"))


def test_twenty_concurrent_duplicate_deliveries_write_one_result(api, sharp_jpeg):
    api.pause_queue()
    job_id = api.upload("heidi", sharp_jpeg).json()["jobId"]
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: api.deliver(job_id), range(20)))
    api.resume_queue()  # the queue's own delivery comes on top, and finds the job finished
    assert all(r.status_code in (200, 409) for r in replies), [r.text for r in replies]
    assert any(r.status_code == 200 and r.json()["status"] == "done" for r in replies)
    job = api.wait("heidi", job_id)
    assert job["status"] == "done" and job["attempts"] == 1
    time.sleep(1)
    assert written_results(api, job_id) == 1


def test_infer_answers_finished_and_unknown_jobs_with_200(api, sharp_jpeg):
    job_id = api.upload("ivan", sharp_jpeg).json()["jobId"]
    api.wait("ivan", job_id)
    again = api.deliver(job_id)
    assert again.status_code == 200 and again.json() == {"jobId": job_id, "status": "done"}
    unknown = api.deliver("fedcba9876543210fedcba98")
    assert unknown.status_code == 200 and unknown.json()["status"] == "unknown"


def test_owner_deletes_the_job_and_its_photo(api, sharp_jpeg):
    job_id = api.upload("judy", sharp_jpeg).json()["jobId"]
    path = api.wait("judy", job_id)["image"]["path"]
    import requests

    url = api.url["status"] + job_id
    assert requests.delete(url, headers=api.auth("mallory"), timeout=10).status_code == 404
    assert api.bucket.get_blob(path) is not None
    reply = requests.delete(url, headers=api.auth("judy"), timeout=10)
    assert reply.status_code == 204
    assert api.bucket.get_blob(path) is None and not api.db.collection("jobs").document(job_id).get().exists
    assert api.status("judy", job_id).status_code == 404
