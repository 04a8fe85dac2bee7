"""The job state machine: claims, leases, duplicate deliveries, the last attempt, the public view."""

import datetime as dt

import pytest

from shared.domain import jobs
from shared.ports import DELETE
from tests.conftest import contract_job_fields

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
IMAGE = {
    "path": "uploads/u1/abc.jpg",
    "contentType": "image/jpeg",
    "sizeBytes": 10,
    "width": 600,
    "height": 450,
    "sha256": "0" * 64,
}


def queued() -> dict:
    return jobs.new_job("u1", IMAGE, NOW, ttl_days=30)


def test_new_job_is_queued_with_expiry():
    job = queued()
    assert job["status"] == jobs.QUEUED and job["attempts"] == 0 and job["ownerUid"] == "u1"
    assert job["expireAt"] - job["createdAt"] == dt.timedelta(days=30)


def test_job_id_from_key_is_stable_per_user_and_random_without():
    assert jobs.new_job_id("u1", "k") == jobs.new_job_id("u1", "k")
    assert jobs.new_job_id("u1", "k") != jobs.new_job_id("u2", "k")
    assert jobs.new_job_id("u1", None) != jobs.new_job_id("u1", None)
    assert jobs.is_job_id(jobs.new_job_id("u1", None)) and jobs.is_job_id(jobs.new_job_id("u1", "k"))


@pytest.mark.parametrize("value", ["", "short", "a/b" * 5, "../../etc/passwd", "x" * 65, "abc def ghi", "é" * 10])
def test_job_ids_that_are_refused(value):
    assert not jobs.is_job_id(value)


CONTRACT_FIELDS = contract_job_fields()  # ../shared/API.md: the job document holds these and no others


def claimed(owner: str = "a") -> tuple[dict, dict]:
    change = jobs.claim(queued(), {}, NOW, owner, lease_seconds=120).change
    assert change is not None
    return {**queued(), **change.job}, change.worker


def test_job_ids_match_in_full():
    job_id = jobs.new_job_id("u1", "k")
    assert jobs.is_job_id(job_id)
    assert not jobs.is_job_id(job_id + "\n") and not jobs.is_job_id(job_id + "\r\n") and not jobs.is_job_id(None)


def test_claim_moves_queued_to_processing_with_a_lease_kept_with_the_worker():
    decision = jobs.claim(queued(), {}, NOW, "owner-a", lease_seconds=120)
    assert decision.action == "claim" and decision.change is not None
    assert decision.change.job == {"status": jobs.PROCESSING, "attempts": 1, "updatedAt": NOW}
    assert decision.change.worker == {"leaseOwner": "owner-a", "leaseUntil": NOW + dt.timedelta(seconds=120)}


def test_a_live_lease_makes_a_second_delivery_busy_and_an_expired_one_is_taken_over():
    job, worker = claimed("a")
    assert jobs.claim(job, worker, NOW + dt.timedelta(seconds=60), "b", 120).action == "busy"
    takeover = jobs.claim(job, worker, NOW + dt.timedelta(seconds=121), "b", 120).change
    assert takeover is not None and takeover.job["attempts"] == 2 and takeover.worker["leaseOwner"] == "b"


@pytest.mark.parametrize("status", sorted(jobs.TERMINAL))
def test_finished_jobs_are_never_claimed_again(status):
    assert jobs.claim({**queued(), "status": status}, {}, NOW, "a", 120).action == "finished"


def test_unknown_job():
    assert jobs.claim(None, {}, NOW, "a", 120).action == "unknown"


def test_finish_clears_the_lease_and_release_hands_the_job_back_with_the_error_kept_private():
    done = jobs.finish(jobs.DONE, NOW, result={"x": 1})
    assert done.job == {"status": jobs.DONE, "updatedAt": NOW, "result": {"x": 1}}
    assert done.worker == {"leaseOwner": None, "leaseUntil": None}
    released = jobs.release(NOW, {"code": "unavailable", "message": "m"})
    assert released.job == {"status": jobs.QUEUED, "updatedAt": NOW}
    assert released.worker["lastError"]["code"] == "unavailable" and released.worker["leaseOwner"] is None
    with pytest.raises(AssertionError):
        jobs.finish(jobs.PROCESSING, NOW)


def test_every_write_to_the_job_document_holds_contract_fields_only():
    job, worker = claimed()
    changes = [
        jobs.finish(jobs.DONE, NOW, result={}),
        jobs.finish(jobs.REJECTED, NOW, rejection={}),
        jobs.finish(jobs.FAILED, NOW, error={}),
        jobs.release(NOW, {}),
        jobs.restart(NOW, 30),
        jobs.abandoned(job, worker, NOW + dt.timedelta(hours=2), 5, dt.timedelta(hours=1)),
    ]
    assert set(queued()) <= CONTRACT_FIELDS and set(job) <= CONTRACT_FIELDS
    for change in changes:
        assert change is not None and set(change.job) <= CONTRACT_FIELDS, change.job


def test_restart_queues_a_failed_job_again_under_a_new_task_nonce():
    worker = jobs.new_worker(NOW, 30)
    change = jobs.restart(NOW, 30)
    expire_at = NOW + dt.timedelta(days=30)
    assert change.job == {
        "status": jobs.QUEUED,
        "updatedAt": NOW,
        "expireAt": expire_at,
        "attempts": 0,
        "error": DELETE,
    }
    assert change.worker["taskNonce"] != worker["taskNonce"] and change.worker["lastError"] is None
    assert change.worker["expireAt"] == expire_at  # a photo stored again never outlives its job
    assert jobs.restart(NOW, 30, IMAGE).job["image"] == IMAGE


def test_a_crashed_last_attempt_is_reported_failed():
    job, worker = claimed()
    job["attempts"] = 5
    assert jobs.abandoned(job, worker, NOW + dt.timedelta(seconds=60), 5, dt.timedelta(hours=1)) is None
    change = jobs.abandoned(job, worker, NOW + dt.timedelta(seconds=121), 5, dt.timedelta(hours=1))
    assert change is not None and change.job["status"] == jobs.FAILED and change.job["error"]["code"] == "not_processed"


def test_a_job_the_queue_gave_up_on_is_failed_after_the_stale_period():
    stale = dt.timedelta(hours=1)
    assert jobs.abandoned(queued(), {}, NOW + dt.timedelta(minutes=59), 5, stale) is None
    change = jobs.abandoned(queued(), {}, NOW + stale, 5, stale)
    assert change is not None and change.job["status"] == jobs.FAILED
    assert jobs.abandoned({**queued(), "status": jobs.DONE}, {}, NOW + 2 * stale, 5, stale) is None


def test_public_view_formats_timestamps():
    view = jobs.public_view("job12345", claimed()[0])
    assert view["jobId"] == "job12345" and view["createdAt"] == "2026-11-22T12:00:00Z"
    assert set(view) - {"jobId"} <= CONTRACT_FIELDS
