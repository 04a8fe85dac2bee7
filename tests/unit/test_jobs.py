"""The job state machine: claims, leases, duplicate deliveries, the last attempt, the public view."""

import datetime as dt

import pytest

from shared.domain import jobs

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


def test_claim_moves_queued_to_processing_with_a_lease():
    decision = jobs.claim(queued(), NOW, "owner-a", lease_seconds=120)
    assert decision.action == "claim"
    assert decision.fields["status"] == jobs.PROCESSING and decision.fields["attempts"] == 1
    assert decision.fields["leaseUntil"] == NOW + dt.timedelta(seconds=120)


def test_a_live_lease_makes_a_second_delivery_busy_and_an_expired_one_is_taken_over():
    job = {**queued(), **jobs.claim(queued(), NOW, "a", 120).fields}
    assert jobs.claim(job, NOW + dt.timedelta(seconds=60), "b", 120).action == "busy"
    takeover = jobs.claim(job, NOW + dt.timedelta(seconds=121), "b", 120)
    assert takeover.action == "claim" and takeover.fields["attempts"] == 2 and takeover.fields["leaseOwner"] == "b"


@pytest.mark.parametrize("status", sorted(jobs.TERMINAL))
def test_finished_jobs_are_never_claimed_again(status):
    assert jobs.claim({**queued(), "status": status}, NOW, "a", 120).action == "finished"


def test_unknown_job():
    assert jobs.claim(None, NOW, "a", 120).action == "unknown"


def test_finish_clears_the_lease_and_release_hands_the_job_back():
    done = jobs.finish(jobs.DONE, NOW, result={"x": 1})
    assert done["status"] == jobs.DONE and done["result"] == {"x": 1} and done["leaseUntil"] is None
    released = jobs.release(NOW, {"code": "unavailable", "message": "m"})
    assert released["status"] == jobs.QUEUED and released["leaseOwner"] is None
    with pytest.raises(AssertionError):
        jobs.finish(jobs.PROCESSING, NOW)


def test_a_crashed_last_attempt_is_reported_failed():
    job = {**queued(), **jobs.claim(queued(), NOW, "a", 120).fields, "attempts": 5}
    assert jobs.abandoned(job, NOW + dt.timedelta(seconds=60), 5, dt.timedelta(hours=1)) is None
    fields = jobs.abandoned(job, NOW + dt.timedelta(seconds=121), 5, dt.timedelta(hours=1))
    assert fields["status"] == jobs.FAILED and fields["error"]["code"] == "not_processed"


def test_a_job_the_queue_gave_up_on_is_failed_after_the_stale_period():
    stale = dt.timedelta(hours=1)
    assert jobs.abandoned(queued(), NOW + dt.timedelta(minutes=59), 5, stale) is None
    assert jobs.abandoned(queued(), NOW + stale, 5, stale)["status"] == jobs.FAILED
    assert jobs.abandoned({**queued(), "status": jobs.DONE}, NOW + 2 * stale, 5, stale) is None


def test_public_view_hides_internal_fields_and_formats_timestamps():
    job = {**queued(), **jobs.claim(queued(), NOW, "a", 120).fields, "lastError": {"code": "x"}}
    view = jobs.public_view("job12345", job)
    assert view["jobId"] == "job12345" and view["createdAt"] == "2026-11-22T12:00:00Z"
    assert not {"leaseOwner", "leaseUntil", "lastError"} & set(view)
