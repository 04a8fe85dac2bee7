"""The in-memory fakes (tests/fakes.py) and the real adapters on the emulators answer alike where the use cases
rely on it: compare-and-swap on a job's version, not-found, idempotent deletes, the quota's count. (The Tasks emulator does not dedupe
task names, so the queue's contract is not checked here.)"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from shared.adapters.firestore import JobStore, QuotaStore
from shared.adapters.storage import PhotoStore
from shared.ports import DELETE, PhotoNotFound
from tests.fakes import FakeJobs, FakePhotos, FakeQuotas


@pytest.fixture(params=["fake", "emulator"])
def real(request) -> bool:
    return request.param == "emulator"


@pytest.fixture
def job_store(real, api):
    return JobStore(api.db, collection="contract-jobs") if real else FakeJobs()


@pytest.fixture
def photo_store(real, api):
    if not real:
        return FakePhotos()
    client = storage.Client(
        project=api.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": api.env["STORAGE_EMULATOR_HOST"]},
    )
    return PhotoStore(client, api.env["STORAGE_BUCKET"])


def test_jobs_compare_and_swap(job_store):
    job_id = secrets.token_hex(12)
    assert job_store.get(job_id) is None
    assert job_store.create(job_id, {"status": "queued", "attempts": 0}) is True
    assert job_store.create(job_id, {"status": "queued", "attempts": 9}) is False
    first = job_store.get(job_id)
    assert first.data == {"status": "queued", "attempts": 0}
    second_time = job_store.update_if_unchanged(job_id, {"status": "processing"}, first.update_time)
    assert second_time is not None and second_time != first.update_time
    assert job_store.update_if_unchanged(job_id, {"status": "done"}, first.update_time) is None, "a stale write"
    assert job_store.get(job_id).data == {"status": "processing", "attempts": 0}, "fields merge"
    job_store.delete(job_id)
    job_store.delete(job_id)  # gone already: no error
    assert job_store.get(job_id) is None
    assert job_store.update_if_unchanged(job_id, {"status": "done"}, second_time) is None, "no resurrection"
    assert job_store.get(job_id) is None


def test_photos_not_found_and_idempotent_delete(photo_store):
    path = f"uploads/contract/{secrets.token_hex(8)}.jpg"
    with pytest.raises(PhotoNotFound):
        photo_store.get(path)
    photo_store.put(path, b"\xff\xd8\xffdata", "image/jpeg")
    assert photo_store.get(path) == b"\xff\xd8\xffdata"
    photo_store.delete(path)
    photo_store.delete(path)
    with pytest.raises(PhotoNotFound):
        photo_store.get(path)


def test_jobs_keep_the_worker_state_beside_the_document_and_delete_fields(job_store):
    job_id = secrets.token_hex(12)
    assert job_store.create(job_id, {"status": "failed", "error": {"code": "x"}}, {"taskNonce": "n1"}) is True
    first = job_store.get(job_id)
    assert first.data == {"status": "failed", "error": {"code": "x"}} and first.worker == {"taskNonce": "n1"}
    written = job_store.update_if_unchanged(
        job_id, {"status": "queued", "error": DELETE}, first.update_time, {"taskNonce": "n2", "leaseOwner": None}
    )
    assert written is not None
    second = job_store.get(job_id)
    assert second.data == {"status": "queued"} and second.worker == {"taskNonce": "n2", "leaseOwner": None}
    stale = job_store.update_if_unchanged(job_id, {"status": "done"}, first.update_time, {"taskNonce": "n3"})
    assert stale is None and job_store.get(job_id).worker["taskNonce"] == "n2", "a stale write changes neither"
    assert job_id in set(job_store.with_status(["queued", "processing"]))
    assert job_id not in set(job_store.with_status(["done"]))
    job_store.delete(job_id)
    assert job_store.get(job_id) is None
    assert job_store.create(job_id, {"status": "queued"}) and job_store.get(job_id).worker == {}, "no old worker state"


def test_a_write_based_on_an_old_worker_state_does_not_land(api):
    """The emulator's read of a job's two documents is not one snapshot: a delivery can see another's claim in the
    document but not yet its lease. A claim decided on such a read must fail, so the version covers both."""
    store = JobStore(api.db, collection="contract-jobs")
    job_id = secrets.token_hex(12)
    store.create(job_id, {"status": "queued", "attempts": 0}, {"taskNonce": "n1"})
    seen = store.get(job_id)
    store._worker_ref(job_id).update({"leaseOwner": "other"})  # another delivery's write, missed by `seen`
    assert store.update_if_unchanged(job_id, {"status": "processing"}, seen.update_time, {"leaseOwner": "me"}) is None
    now = store.get(job_id)
    assert now.data["status"] == "queued" and now.worker["leaseOwner"] == "other"
    store.delete(job_id)


def test_a_stored_photo_is_never_replaced(photo_store):
    path = f"uploads/contract/{secrets.token_hex(8)}.jpg"
    assert photo_store.put(path, b"\xff\xd8\xfffirst", "image/jpeg") is True
    assert photo_store.put(path, b"\xff\xd8\xffsecond", "image/jpeg") is False
    assert photo_store.get(path) == b"\xff\xd8\xfffirst"


def test_the_quota_counts_a_key_once_and_refuses_past_the_limit(real, api):
    quotas = QuotaStore(api.db, collection="contract-quotas") if real else FakeQuotas()
    uid, now = secrets.token_hex(8), dt.datetime.now(dt.UTC)
    assert [quotas.take(uid, 2, now, key) for key in ("job-a", "job-a", None)] == [0, 0, 0]
    refused = quotas.take(uid, 2, now, "job-b")
    assert 1 <= refused <= 3600
    assert quotas.take(uid, 2, now, "job-a") == 0, "a key counted this hour stays counted"
    assert quotas.take(uid, 2, now + dt.timedelta(hours=1), "job-b") == 0, "a new hour, a new count"


def test_a_users_parallel_uploads_all_get_through_the_firestore_quota(api):
    # one quota document per user: parallel uploads contend for its compare-and-swap, and each must be counted,
    # none refused as if Firestore were down (the fake counts under a lock: only the emulator can contend)
    from concurrent.futures import ThreadPoolExecutor

    quotas = QuotaStore(api.db, collection="contract-quotas")
    uid, now = secrets.token_hex(8), dt.datetime.now(dt.UTC)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda key: quotas.take(uid, 60, now, key), [f"job-{n}" for n in range(24)]))
    assert answers == [0] * 24
    assert quotas.take(uid, 24, now, "one-more") > 0, "all 24 were counted"
