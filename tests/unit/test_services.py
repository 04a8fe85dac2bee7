"""The use cases on in-memory fakes: every path of upload, infer and status, and the races between them, in
milliseconds and with no emulator. (tests/e2e runs the same flows on the real emulators and processes.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from shared.domain import jobs
from shared.errors import ServiceError, Unavailable
from shared.usecases import infer, status, upload
from tests.conftest import contract_job_fields
from tests.fakes import FakeJobs, FakePhotos, FakeQueue, FakeQuotas, fake_deps

UID, OTHER = "user-a", "user-b"
CONTRACT_FIELDS = contract_job_fields()  # ../shared/API.md: the job document holds these and no others


def png(width: int = 96, height: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 120, 100)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Analysis:
    status: str
    result: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None


class Analyzer:
    """Stands in for the pipeline: counts its calls; ``then`` runs inside the analysis (to race it)."""

    def __init__(self, analysis: Analysis | None = None, error: Exception | None = None, then=None):
        self.analysis = analysis or Analysis("done", result={"assessment": {"label": "nv"}, "timingsMs": {"total": 1}})
        self.error, self.then, self.calls = error, then, 0

    def __call__(self, data: bytes) -> Analysis:
        self.calls += 1
        assert data[:3] == b"\xff\xd8\xff", "infer analyses the stored JPEG"
        if self.then:
            self.then()
        if self.error:
            raise self.error
        return self.analysis


@pytest.fixture
def deps():
    return fake_deps(MAX_ATTEMPTS="3", LEASE_SECONDS="60")


def ports(deps) -> tuple[FakeJobs, FakePhotos, FakeQuotas, FakeQueue]:
    return deps.jobs, deps.photos, deps.quotas, deps.queue


def nothing_stored(deps) -> bool:
    store, photos, _, queue = ports(deps)
    return not store.docs and not photos.objects and not queue.created


def queued_job(deps, key: str | None = None) -> str:
    outcome = upload.upload(deps, UID, png(), "image/png", key)
    assert outcome.status == 202
    return outcome.body["jobId"]


def hold(deps, job_id: str, job: dict, worker: dict) -> None:
    """Put the job in a state (its document's fields and its worker state), as another delivery would."""
    assert deps.jobs.update_if_unchanged(job_id, job, deps.jobs.get(job_id).update_time, worker) is not None


def deliver(deps, job_id: str, analyze=None, retry_count: int = 0):
    return infer.deliver(deps, analyze or Analyzer(), job_id, retry_count)


# -- upload ------------------------------------------------------------------------------------------------


def test_upload_stores_a_clean_jpeg_creates_the_job_and_one_task(deps):
    outcome = upload.upload(deps, UID, png(), "image/png", None)
    store, photos, _, queue = ports(deps)
    job_id = outcome.body["jobId"]
    assert outcome.status == 202 and outcome.body["status"] == "queued"
    assert outcome.headers["Location"] == outcome.body["statusUrl"] == f"http://127.0.0.1:8093/{job_id}"
    job = store.data(job_id)
    assert job["ownerUid"] == UID and job["status"] == "queued" and job["attempts"] == 0
    assert job["image"]["path"] == f"uploads/{UID}/{job_id}.jpg" and (
        job["image"]["width"],
        job["image"]["height"],
    ) == (96, 80)
    data, content_type = photos.objects[job["image"]["path"]]
    assert content_type == "image/jpeg" and data[:3] == b"\xff\xd8\xff" and job["image"]["sizeBytes"] == len(data)
    assert queue.created == [job_id]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"not an image", "image/png", 400, "invalid_image"),
        (png(), "image/gif", 415, "unsupported_media_type"),
        (png(40, 40), "image/png", 422, "image_too_small"),
        (png(65_501, 64), "image/png", 422, "image_too_large"),  # longer than a JPEG, the stored format, holds
    ],
)
def test_a_refused_photo_stores_nothing_and_takes_no_quota(deps, data, content_type, status, code):
    with pytest.raises(ServiceError) as refused:
        upload.upload(deps, UID, data, content_type, "key-1")
    assert (refused.value.status, refused.value.code) == (status, code)
    assert nothing_stored(deps) and not deps.quotas.counts


def test_the_same_key_replays_the_job_and_asks_again_for_its_task(deps):
    deps.queue.fail.add("enqueue")  # the first request stops before its task is created
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", "key-1")
    deps.queue.fail.clear()
    job_id = jobs.new_job_id(UID, "key-1")
    again = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert again.status == 200 and again.body["jobId"] == job_id and again.log["replay"]
    assert deps.queue.created == [job_id] and len(deps.jobs.docs) == 1 and len(deps.photos.objects) == 1
    assert sum(deps.quotas.counts.values()) == 1, "a replay is not a second upload"


def test_a_replay_of_a_finished_job_returns_it_without_a_new_task(deps):
    job_id = queued_job(deps, "key-1")
    deliver(deps, job_id)
    deps.queue.created.clear()
    again = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert again.status == 200 and again.body["status"] == "done" and "result" in again.body
    assert deps.queue.created == []


def test_two_racing_requests_with_one_key_make_one_job(deps):
    job_id = jobs.new_job_id(UID, "key-1")
    # the twin request creates the job between our read and our create
    deps.jobs.before["create"] = lambda: upload.upload(deps, UID, png(), "image/png", "key-1")
    outcome = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert outcome.status == 200 and outcome.body["jobId"] == job_id
    assert list(deps.jobs.docs) == [job_id] and deps.queue.created == [job_id]


def test_the_same_key_from_another_user_is_another_job(deps):
    assert queued_job(deps, "key-1") != upload.upload(deps, OTHER, png(), "image/png", "key-1").body["jobId"]


def test_quota_refuses_with_retry_after_and_stores_nothing():
    deps = fake_deps(UPLOADS_PER_USER_PER_HOUR="2")
    queued_job(deps), queued_job(deps)
    with pytest.raises(ServiceError) as refused:
        upload.upload(deps, UID, png(), "image/png", None)
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 3600
    assert len(deps.jobs.docs) == len(deps.photos.objects) == len(deps.queue.created) == 2
    assert upload.upload(deps, OTHER, png(), "image/png", None).status == 202, "the quota is per user"


def test_retrying_a_503_with_the_same_key_spends_the_quota_once():
    # Storage down for five tries of one photo, as the README tells apps to retry: then it is back
    deps = fake_deps(UPLOADS_PER_USER_PER_HOUR="3")
    deps.photos.fail.add("put")
    for _ in range(5):
        with pytest.raises(Unavailable):
            upload.upload(deps, UID, png(), "image/png", "key-1")
    deps.photos.fail.clear()
    assert upload.upload(deps, UID, png(), "image/png", "key-1").status == 202
    assert sum(deps.quotas.counts.values()) == 1
    assert upload.upload(deps, UID, png(), "image/png", None).status == 202, "uploads without a key count each"
    assert upload.upload(deps, UID, png(), "image/png", "key-2").status == 202
    with pytest.raises(ServiceError) as refused:
        upload.upload(deps, UID, png(), "image/png", "key-3")
    assert refused.value.code == "rate_limited"


def test_firestore_down_at_create_without_a_key_removes_the_photo(deps):
    deps.jobs.fail.add("create")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", None)
    assert nothing_stored(deps)


def test_firestore_down_at_create_with_a_key_keeps_the_photo_for_the_retry(deps):
    deps.jobs.fail.add("create")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", "key-1")
    assert not deps.jobs.docs and len(deps.photos.objects) == 1 and not deps.queue.created
    deps.jobs.fail.clear()
    retry = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert retry.status == 202 and deps.queue.created == [retry.body["jobId"]] and len(deps.photos.objects) == 1


@pytest.mark.parametrize("key", [None, "key-1"])
def test_a_create_that_landed_although_it_failed_goes_on_with_its_job(deps, monkeypatch, key):
    real_create = deps.jobs.create

    def lands_but_its_answer_is_lost(*args):  # a deadline exceeded after the commit
        real_create(*args)
        raise Unavailable("Firestore")

    monkeypatch.setattr(deps.jobs, "create", lands_but_its_answer_is_lost)
    outcome = upload.upload(deps, UID, png(), "image/png", key)
    (job_id,) = deps.jobs.docs
    # the job's task nonce is this request's: its own job, created (202), with a key or without
    assert outcome.status == 202 and outcome.body["jobId"] == job_id
    assert deps.queue.created == [job_id] and len(deps.photos.objects) == 1


def test_a_create_whose_outcome_cannot_be_read_leaves_nothing_without_a_key(deps, monkeypatch):
    real_create = deps.jobs.create

    def lands_but_its_answer_is_lost(*args):
        real_create(*args)
        deps.jobs.fail.add("get")  # and Firestore fails the read that would tell
        raise Unavailable("Firestore")

    monkeypatch.setattr(deps.jobs, "create", lands_but_its_answer_is_lost)
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", None)
    assert nothing_stored(deps), "the job id was this request's alone: its job and photo are removed"


def test_a_retry_with_other_bytes_gets_a_job_that_describes_the_stored_photo(deps):
    # the first try stored its photo, then Firestore failed; the retry sends other bytes under the same key: the
    # stored photo is never replaced, so the job must describe it, not the bytes the retry sent
    deps.jobs.fail.add("create")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(300, 200), "image/png", "key-1")
    ((path, first),) = deps.photos.objects.items()
    deps.jobs.fail.clear()
    retry = upload.upload(deps, UID, png(400, 300), "image/png", "key-1")
    image = deps.jobs.data(retry.body["jobId"])["image"]
    assert deps.photos.objects == {path: first}
    assert (image["sha256"], image["sizeBytes"]) == (hashlib.sha256(first[0]).hexdigest(), len(first[0]))
    assert (image["width"], image["height"]) == (300, 200)


def test_a_failed_create_leaves_the_photo_of_a_twin_that_created_the_job(deps):
    # two requests with one key: the twin finds the photo stored and creates the job while this request's create
    # fails; the twin's job keeps its photo
    twin = []

    def twin_then_fail():
        twin.append(upload.upload(deps, UID, png(), "image/png", "key-1"))
        raise Unavailable("Firestore")

    deps.jobs.before["create"] = twin_then_fail
    outcome = upload.upload(deps, UID, png(), "image/png", "key-1")
    (job_id,) = deps.jobs.docs
    assert [t.status for t in twin] == [202] and outcome.status == 200 and outcome.body["jobId"] == job_id
    assert len(deps.photos.objects) == 1


def test_storage_down_stores_nothing(deps):
    deps.photos.fail.add("put")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", None)
    assert nothing_stored(deps)


def test_queue_down_without_a_key_leaves_nothing_behind(deps):
    deps.queue.fail.add("enqueue")
    with pytest.raises(Unavailable) as unavailable:
        upload.upload(deps, UID, png(), "image/png", None)
    assert unavailable.value.status == 503 and unavailable.value.headers["Retry-After"]
    assert nothing_stored(deps)


def test_queue_down_with_a_key_keeps_the_job_for_the_retry_to_resume(deps):
    deps.queue.fail.add("enqueue")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", "key-1")
    (job_id,) = deps.jobs.docs
    assert deps.jobs.data(job_id)["status"] == "queued" and len(deps.photos.objects) == 1
    deps.queue.fail.clear()
    retry = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert retry.status == 200 and retry.body["jobId"] == job_id and deps.queue.created == [job_id]


def test_cleanup_that_fails_too_still_answers_unavailable(deps):
    deps.queue.fail.add("enqueue")
    deps.photos.fail.add("delete")
    with pytest.raises(Unavailable):
        upload.upload(deps, UID, png(), "image/png", None)
    assert not deps.jobs.docs, "the job is removed even when the photo cannot be (the bucket lifecycle will)"


# -- infer -------------------------------------------------------------------------------------------------


def test_a_delivery_claims_analyses_and_writes_the_result_once(deps):
    job_id = queued_job(deps)
    analyzer = Analyzer()
    outcome = deliver(deps, job_id, analyzer)
    job = deps.jobs.data(job_id)
    assert outcome.status == 200 and outcome.body == {"jobId": job_id, "status": "done"} and outcome.log["written"]
    assert job["status"] == "done" and job["result"] == analyzer.analysis.result and job["attempts"] == 1
    worker = deps.jobs.workers[job_id]
    assert worker["leaseOwner"] is None and worker["leaseUntil"] is None and analyzer.calls == 1


def test_at_least_once_delivery_analyses_once(deps):
    job_id = queued_job(deps)
    analyzer = Analyzer()
    answers = [deliver(deps, delivered, analyzer) for delivered in deps.queue.deliveries(copies=2)]
    assert [answer.body for answer in answers] == [{"jobId": job_id, "status": "done"}] * 2
    assert answers[1].log["duplicate"] and analyzer.calls == 1 and deps.jobs.data(job_id)["attempts"] == 1


def test_a_rejection_is_written_as_rejected(deps):
    job_id = queued_job(deps)
    rejection = {"code": "too_blurry", "message": "Retake the photo."}
    outcome = deliver(deps, job_id, Analyzer(Analysis("rejected", rejection=rejection)))
    assert outcome.body["status"] == "rejected" and deps.jobs.data(job_id)["rejection"] == rejection


def test_an_unknown_job_is_answered_200_so_the_queue_stops(deps):
    outcome = deliver(deps, "0123456789abcdef01234567")
    assert outcome.status == 200 and outcome.body["status"] == "unknown"


def test_the_compare_and_swap_claim_lets_one_of_two_concurrent_deliveries_win(deps):
    job_id = queued_job(deps)
    winner = Analyzer()
    loser = Analyzer()
    # the other delivery claims between this one's read and its conditional write
    deps.jobs.before["update"] = lambda: deliver(deps, job_id, winner)
    with pytest.raises(ServiceError) as busy:
        deliver(deps, job_id, loser)
    assert busy.value.status == 409 and busy.value.code == "busy"
    assert (winner.calls, loser.calls) == (1, 0) and deps.jobs.data(job_id)["status"] == "done"


def held_by_another_delivery(deps, job_id: str) -> None:
    """The job is processing under another delivery's lease that is still live for an hour."""
    hold(
        deps,
        job_id,
        {"status": "processing"},
        {"leaseOwner": "other", "leaseUntil": infer.utcnow() + dt.timedelta(hours=1)},
    )


def test_a_live_lease_makes_a_second_delivery_wait_then_answer_busy(monkeypatch):
    deps = fake_deps(LEASE_SECONDS="0")  # the wait is bounded by the lease: about a second here
    monkeypatch.setattr(infer, "BUSY_POLL_SECONDS", 0.05)
    job_id = queued_job(deps)
    held_by_another_delivery(deps, job_id)
    analyzer = Analyzer()
    with pytest.raises(ServiceError) as busy:
        deliver(deps, job_id, analyzer)
    assert busy.value.status == 409 and analyzer.calls == 0 and deps.jobs.workers[job_id]["leaseOwner"] == "other"


def test_a_waiting_delivery_answers_once_the_holder_finishes(deps, monkeypatch):
    monkeypatch.setattr(infer, "BUSY_POLL_SECONDS", 0.01)
    job_id = queued_job(deps)
    held_by_another_delivery(deps, job_id)

    def holder_finishes():
        snapshot = deps.jobs.get(job_id)
        change = jobs.finish("done", infer.utcnow(), result={})
        deps.jobs.update_if_unchanged(job_id, change.job, snapshot.update_time, change.worker)

    analyzer = Analyzer()
    reads = []
    original_get = deps.jobs.get

    def get(job_id_: str):  # the first read sees the live lease; the holder finishes before the second
        reads.append(job_id_)
        if len(reads) == 2:
            holder_finishes()
        return original_get(job_id_)

    monkeypatch.setattr(deps.jobs, "get", get)
    outcome = deliver(deps, job_id, analyzer)
    assert outcome.status == 200 and outcome.body["status"] == "done" and analyzer.calls == 0


def test_an_expired_lease_is_taken_over(deps):
    job_id = queued_job(deps)
    crashed = {"leaseOwner": "crashed", "leaseUntil": infer.utcnow() - dt.timedelta(seconds=1)}
    hold(deps, job_id, {"status": "processing", "attempts": 1}, crashed)
    outcome = deliver(deps, job_id, retry_count=1)
    job = deps.jobs.data(job_id)
    assert outcome.body["status"] == "done" and job["attempts"] == 2 and deps.jobs.workers[job_id]["leaseOwner"] is None


def test_a_failed_attempt_hands_the_job_back_for_the_next_one(deps):
    job_id = queued_job(deps)
    with pytest.raises(Unavailable) as retry:
        deliver(deps, job_id, Analyzer(error=RuntimeError("model crashed")), retry_count=0)
    job = deps.jobs.data(job_id)
    assert retry.value.status == 503
    worker = deps.jobs.workers[job_id]
    assert (
        job["status"] == "queued" and worker["lastError"]["code"] == "analysis_failed" and worker["leaseOwner"] is None
    )
    assert deliver(deps, job_id, retry_count=1).body["status"] == "done"
    assert deps.jobs.data(job_id)["attempts"] == 2


def test_storage_down_is_retried_until_the_last_attempt_which_writes_failed(deps):
    job_id = queued_job(deps)
    deps.photos.fail.add("get")
    with pytest.raises(Unavailable):
        deliver(deps, job_id, retry_count=1)
    assert deps.jobs.workers[job_id]["lastError"]["code"] == "unavailable"
    outcome = deliver(deps, job_id, retry_count=2)  # MAX_ATTEMPTS=3: the third delivery is the last
    job = deps.jobs.data(job_id)
    assert outcome.status == 200 and job["status"] == "failed" and job["error"]["code"] == "unavailable"


def test_the_last_attempt_writes_failed_and_answers_200(deps):
    job_id = queued_job(deps)
    outcome = deliver(deps, job_id, Analyzer(error=RuntimeError("model crashed")), retry_count=2)
    job = deps.jobs.data(job_id)
    assert outcome.status == 200 and outcome.body["status"] == "failed"
    assert job["status"] == "failed" and job["error"]["code"] == "analysis_failed"
    assert deps.jobs.workers[job_id]["leaseOwner"] is None


def test_a_photo_that_is_gone_fails_the_job_at_once(deps):
    job_id = queued_job(deps)
    deps.photos.objects.clear()
    outcome = deliver(deps, job_id)
    assert outcome.status == 200 and deps.jobs.data(job_id)["error"]["code"] == "image_missing"


def test_an_invalid_stored_photo_fails_the_job_with_its_error(deps):
    job_id = queued_job(deps)
    refused = ServiceError(422, "image_too_small", "Too small.")
    outcome = deliver(deps, job_id, Analyzer(error=refused))
    assert outcome.body["status"] == "failed" and deps.jobs.data(job_id)["error"]["code"] == "image_too_small"


def test_erase_racing_infer_leaves_nothing_behind(deps):
    job_id = queued_job(deps)
    erase = Analyzer(then=lambda: status.erase(deps, UID, job_id))  # the owner erases during the analysis
    outcome = deliver(deps, job_id, erase)
    assert outcome.status == 200 and outcome.log["written"] is False
    assert not deps.jobs.docs and not deps.photos.objects, "the result must not bring the job back"


# -- status ------------------------------------------------------------------------------------------------


def test_the_owner_reads_the_public_view(deps):
    job_id = queued_job(deps)
    with pytest.raises(Unavailable):
        deliver(deps, job_id, Analyzer(error=RuntimeError("crash")))  # a lease taken and a last error
    view = status.read(deps, UID, job_id).body
    assert view["jobId"] == job_id and view["status"] == "queued"
    assert set(view) - {"jobId"} <= CONTRACT_FIELDS and deps.jobs.workers[job_id]["lastError"]
    assert view["createdAt"].endswith("Z") and dt.datetime.fromisoformat(view["createdAt"])


@pytest.mark.parametrize("job_id", ["0123456789abcdef01234567", "../../etc", ""])
def test_unknown_and_malformed_ids_are_not_found(deps, job_id):
    with pytest.raises(ServiceError) as missing:
        status.read(deps, UID, job_id)
    assert missing.value.status == 404 and missing.value.code == "not_found"


def test_another_users_job_is_not_found_and_cannot_be_erased(deps):
    job_id = queued_job(deps)
    for use_case in (status.read, status.erase):
        with pytest.raises(ServiceError) as missing:
            use_case(deps, OTHER, job_id)
        assert missing.value.status == 404
    assert job_id in deps.jobs.docs and len(deps.photos.objects) == 1


def test_erase_removes_the_photo_and_the_job(deps):
    job_id = queued_job(deps)
    assert status.erase(deps, UID, job_id).status == 204
    assert not deps.jobs.docs and not deps.photos.objects
    with pytest.raises(ServiceError):
        status.read(deps, UID, job_id)


def test_a_stale_job_is_reported_and_written_failed(deps):
    job_id = queued_job(deps)
    old = infer.utcnow() - dt.timedelta(seconds=deps.config.STALE_AFTER_SECONDS + 1)
    deps.jobs.update_if_unchanged(job_id, {"updatedAt": old}, deps.jobs.get(job_id).update_time)
    view = status.read(deps, UID, job_id).body
    assert view["status"] == "failed" and view["error"]["code"] == "not_processed"
    assert deps.jobs.data(job_id)["status"] == "failed"


def test_a_crashed_last_attempt_is_reported_failed(deps):
    job_id = queued_job(deps)
    crashed = {"leaseOwner": "crashed", "leaseUntil": infer.utcnow() - dt.timedelta(seconds=1)}
    hold(deps, job_id, {"status": "processing", "attempts": deps.config.MAX_ATTEMPTS}, crashed)
    assert status.read(deps, UID, job_id).body["status"] == "failed"


def test_a_job_still_in_its_lease_is_not_failed(deps):
    job_id = queued_job(deps)
    hold(
        deps,
        job_id,
        {"status": "processing", "attempts": 3},
        {"leaseOwner": "x", "leaseUntil": infer.utcnow() + dt.timedelta(60)},
    )
    assert status.read(deps, UID, job_id).body["status"] == "processing"


def test_a_stale_job_that_finishes_meanwhile_is_shown_as_finished(deps):
    job_id = queued_job(deps)
    old = infer.utcnow() - dt.timedelta(days=1)
    deps.jobs.update_if_unchanged(job_id, {"updatedAt": old}, deps.jobs.get(job_id).update_time)

    def finishes():  # infer writes its result between status's read and its conditional write
        snapshot = deps.jobs.get(job_id)
        change = jobs.finish("done", infer.utcnow(), result={})
        deps.jobs.update_if_unchanged(job_id, change.job, snapshot.update_time, change.worker)

    deps.jobs.before["update"] = finishes
    shown = status.read(deps, UID, job_id)
    assert deps.jobs.data(job_id)["status"] == "done", "the stale check must not overwrite a finished job"
    assert shown.body["status"] == "done", "the answer shows what the delivery wrote"
