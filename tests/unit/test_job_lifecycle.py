"""Issue 13 on the in-memory fakes: the quota before decoding, the worker's state kept out of the job document, a
task per run (named with a nonce), a failed job started again by its Idempotency-Key, and the sweep."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.analysis import imaging
from shared.domain import jobs
from shared.errors import ServiceError
from shared.usecases import infer, status, upload
from tests.fakes import fake_deps
from tests.unit.test_services import CONTRACT_FIELDS, UID, Analyzer, hold, png


@pytest.fixture
def deps():
    return fake_deps(MAX_ATTEMPTS="3", LEASE_SECONDS="60")


def run_queue(deps, analyzer=None) -> None:
    for job_id in deps.queue.deliveries():
        infer.deliver(deps, analyzer or Analyzer(), job_id, 0)


# -- the quota and every cheaper check come before decoding ------------------------------------------------------


def test_a_spent_quota_refuses_before_decoding(monkeypatch):
    deps = fake_deps(UPLOADS_PER_USER_PER_HOUR="2")
    for key in ("a", "b"):
        upload.upload(deps, UID, png(), "image/png", key)

    def decode(*args, **kwargs):
        raise AssertionError("decoded although the quota was spent")

    monkeypatch.setattr(imaging, "decode", decode)
    with pytest.raises(ServiceError) as refused:
        upload.upload(deps, UID, png(), "image/png", "c")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert int(refused.value.headers["Retry-After"]) > 0


def test_checks_cheaper_than_decoding_take_no_quota_and_decoding_failures_do(deps):
    header_says_too_large = png(9000, 9000)  # a 40 MP limit: refused from the header alone
    with pytest.raises(ServiceError) as refused:
        upload.upload(fake_deps(MAX_IMAGE_PIXELS="1000000"), UID, header_says_too_large, "image/png", None)
    assert refused.value.code == "image_too_large"
    truncated = png()[:-30]
    with pytest.raises(ServiceError) as broken:
        upload.upload(deps, UID, truncated, "image/png", None)
    assert broken.value.code == "invalid_image" and sum(deps.quotas.counts.values()) == 1
    assert not deps.jobs.docs and not deps.photos.objects and not deps.queue.created


# -- the job document holds the contract's fields only -----------------------------------------------------------


def test_the_job_document_never_holds_the_workers_state(deps):
    job_id = upload.upload(deps, UID, png(), "image/png", None).body["jobId"]
    seen = [set(deps.jobs.data(job_id))]
    with pytest.raises(ServiceError):  # a failed attempt: a lease taken, then released with its error
        infer.deliver(deps, Analyzer(error=RuntimeError("model crashed")), job_id, 0)
    seen.append(set(deps.jobs.data(job_id)))
    hold(deps, job_id, {"status": "processing"}, {"leaseOwner": "x", "leaseUntil": infer.utcnow() - dt.timedelta(1)})
    infer.deliver(deps, Analyzer(), job_id, 1)
    seen.append(set(deps.jobs.data(job_id)))
    assert all(fields <= CONTRACT_FIELDS for fields in seen), seen
    worker = deps.jobs.workers[job_id]
    assert worker["lastError"]["code"] == "analysis_failed" and worker["taskNonce"] and "leaseUntil" in worker


# -- a task per run, named with a nonce (Cloud Tasks keeps a used name reserved) ---------------------------------


def test_reupload_after_delete_with_the_same_key_gets_a_new_task_and_ends_done(deps):
    first = upload.upload(deps, UID, png(), "image/png", "key-1").body["jobId"]
    run_queue(deps)
    assert status.erase(deps, UID, first).status == 204
    again = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert again.status == 202 and again.body["jobId"] == first
    assert deps.queue.created == [first, first] and len(set(deps.queue.names)) == 2
    run_queue(deps)
    assert deps.jobs.data(first)["status"] == "done"


def test_a_replay_of_a_queued_job_reuses_its_task_name(deps):
    job_id = upload.upload(deps, UID, png(), "image/png", "key-1").body["jobId"]
    assert upload.upload(deps, UID, png(), "image/png", "key-1").status == 200
    assert deps.queue.created == [job_id], "the same name: Cloud Tasks makes no second task"


def test_a_replay_of_a_queued_job_without_worker_state_still_asks_for_a_task(deps):
    """Jobs created before the worker state moved out of the document have no worker record (no nonce)."""
    job_id = upload.upload(deps, UID, png(), "image/png", "key-1").body["jobId"]
    deps.jobs.workers.pop(job_id)
    replay = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert replay.status == 200 and replay.body["status"] == "queued"
    assert deps.queue.created == [job_id, job_id]


# -- the same key after `failed` starts the job again -----------------------------------------------------------


def failed_job(deps, key: str) -> str:
    job_id = upload.upload(deps, UID, png(), "image/png", key).body["jobId"]
    for retry in range(deps.config.MAX_ATTEMPTS):
        try:
            infer.deliver(deps, Analyzer(error=RuntimeError("model crashed")), job_id, retry)
        except ServiceError:
            pass
    deps.queue.deliveries()
    assert deps.jobs.data(job_id)["status"] == "failed"
    return job_id


def test_the_same_key_after_failed_starts_the_same_job_again(deps):
    job_id = failed_job(deps, "key-1")
    again = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert again.status == 202 and again.body == {
        "jobId": job_id,
        "status": "queued",
        "statusUrl": f"http://127.0.0.1:8093/{job_id}",
    }
    job = deps.jobs.data(job_id)
    assert job["status"] == "queued" and "error" not in job and job["attempts"] == 0
    assert deps.queue.created == [job_id, job_id] and len(set(deps.queue.names)) == 2
    assert len(deps.photos.objects) == 1
    run_queue(deps)
    assert deps.jobs.data(job_id)["status"] == "done"


def test_a_restart_stores_the_photo_again_when_it_was_gone(deps):
    job_id = failed_job(deps, "key-1")
    path = deps.jobs.data(job_id)["image"]["path"]
    first_expiry = deps.jobs.data(job_id)["expireAt"]
    deps.photos.objects.clear()  # expired by the bucket's lifecycle rule
    assert upload.upload(deps, UID, png(), "image/png", "key-1").status == 202
    assert path in deps.photos.objects
    assert deps.jobs.data(job_id)["expireAt"] > first_expiry  # the photo's new life is covered by the job's
    run_queue(deps)
    assert deps.jobs.data(job_id)["status"] == "done"


def test_an_erase_while_a_restart_stores_the_photo_again_leaves_no_photo(deps):
    # "Try again" and "Delete" at once: the erase lands between the restart's photo and its job update
    job_id = failed_job(deps, "key-1")
    deps.photos.objects.clear()  # so the restart stores the photo anew
    erased = []
    deps.photos.before["put"] = lambda: erased.append(status.erase(deps, UID, job_id).status)
    with pytest.raises(ServiceError) as retried:
        upload.upload(deps, UID, png(), "image/png", "key-1")
    assert erased == [204] and retried.value.status == 503
    assert deps.jobs.get(job_id) is None and not deps.photos.objects, "nothing of the erased job stays"


def test_a_restart_that_lands_between_the_erases_photo_and_job_deletes_leaves_no_photo(deps):
    # the other order: the erase removes the photo, the restart stores it again and updates the job, then the
    # erase removes the job; its second photo delete leaves nothing of the erased job
    job_id = failed_job(deps, "key-1")
    restarted = []
    deps.jobs.before["delete"] = lambda: restarted.append(upload.upload(deps, UID, png(), "image/png", "key-1"))
    assert status.erase(deps, UID, job_id).status == 204
    assert [outcome.status for outcome in restarted] == [202]
    assert deps.jobs.get(job_id) is None and not deps.photos.objects, "nothing of the erased job stays"
    run_queue(deps)  # the restart's task finds no job
    assert not deps.jobs.docs and not deps.photos.objects


def test_an_undo_the_uploader_may_not_do_still_answers_503(deps, monkeypatch):
    # a bucket that refuses the removal (say, a deploy from before upload could delete) must not hide the 503
    def refused(path):
        raise PermissionError("403 storage.objects.delete denied")

    monkeypatch.setattr(deps.photos, "delete", refused)
    deps.jobs.fail.add("create")
    with pytest.raises(ServiceError) as caught:
        upload.upload(deps, UID, png(), "image/png", None)
    assert caught.value.status == 503


@pytest.mark.parametrize("analysis_status", ["done", "rejected"])
def test_the_same_key_after_done_or_rejected_returns_the_job_as_it_is(deps, analysis_status):
    job_id = upload.upload(deps, UID, png(), "image/png", "key-1").body["jobId"]
    analysis = Analyzer()
    analysis.analysis.status = analysis_status
    run_queue(deps, analysis)
    again = upload.upload(deps, UID, png(), "image/png", "key-1")
    assert again.status == 200 and again.body["status"] == analysis_status and deps.queue.created == [job_id]


# -- the sweep ---------------------------------------------------------------------------------------------------


def test_the_sweep_fails_the_jobs_nobody_will_finish_and_only_those(deps):
    stale, crashed, live, finished = (upload.upload(deps, UID, png(), "image/png", k).body["jobId"] for k in "abcd")
    deps.queue.deliveries()
    long_ago = infer.utcnow() - dt.timedelta(seconds=deps.config.STALE_AFTER_SECONDS + 1)
    hold(deps, stale, {"updatedAt": long_ago}, {})
    expired = {"leaseOwner": "gone", "leaseUntil": infer.utcnow() - dt.timedelta(seconds=1)}
    hold(deps, crashed, {"status": "processing", "attempts": deps.config.MAX_ATTEMPTS}, expired)
    hold(
        deps,
        live,
        {"status": "processing", "attempts": 1},
        {**expired, "leaseUntil": infer.utcnow() + dt.timedelta(60)},
    )
    infer.deliver(deps, Analyzer(), finished, 0)
    outcome = status.sweep(deps)
    assert outcome.status == 200 and outcome.body == {"checked": 3, "failed": 2}
    assert sorted(outcome.log["failed"]) == sorted([stale, crashed])
    states = {job_id: deps.jobs.data(job_id)["status"] for job_id in (stale, crashed, live, finished)}
    assert states == {stale: "failed", crashed: "failed", live: "processing", finished: "done"}
    assert deps.jobs.data(stale)["error"]["code"] == "not_processed"


def test_the_sweep_does_not_overwrite_a_job_that_finishes_meanwhile(deps):
    job_id = upload.upload(deps, UID, png(), "image/png", None).body["jobId"]
    hold(deps, job_id, {"updatedAt": infer.utcnow() - dt.timedelta(days=1)}, {})

    def finishes():
        snapshot = deps.jobs.get(job_id)
        change = jobs.finish("done", infer.utcnow(), result={})
        deps.jobs.update_if_unchanged(job_id, change.job, snapshot.update_time, change.worker)

    deps.jobs.before["update"] = finishes
    assert status.sweep(deps).body == {"checked": 1, "failed": 0}
    assert deps.jobs.data(job_id)["status"] == "done"


def test_the_sweep_counts_only_the_jobs_it_ended(deps):
    # a delivery's last attempt writes failed while the sweep looks at the job: the sweep did not end it
    job_id = upload.upload(deps, UID, png(), "image/png", None).body["jobId"]
    hold(deps, job_id, {"updatedAt": infer.utcnow() - dt.timedelta(days=1)}, {})

    def the_last_attempt_fails_it():
        snapshot = deps.jobs.get(job_id)
        change = jobs.finish("failed", infer.utcnow(), error={"code": "analysis_failed", "message": "m"})
        deps.jobs.update_if_unchanged(job_id, change.job, snapshot.update_time, change.worker)

    deps.jobs.before["update"] = the_last_attempt_fails_it
    assert status.sweep(deps).body == {"checked": 1, "failed": 0}
    assert deps.jobs.data(job_id)["status"] == "failed"


# -- ids match in full -------------------------------------------------------------------------------------------


def test_a_job_id_with_a_trailing_newline_is_not_found(deps):
    job_id = upload.upload(deps, UID, png(), "image/png", None).body["jobId"]
    for use_case in (status.read, status.erase):
        with pytest.raises(ServiceError) as missing:
            use_case(deps, UID, job_id + "\n")
        assert missing.value.status == 404
    assert status.read(deps, UID, job_id).status == 200


@pytest.mark.parametrize("uid", ["alice\n", "alice\r\n", "", "a" * 129, "..", "a/b"])
def test_user_ids_match_in_full(uid):
    from shared.auth import _valid_uid

    assert not _valid_uid(uid) and _valid_uid("alice")
