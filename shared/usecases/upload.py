"""The upload use case: the checks cheaper than decoding, the quota, then decode and store the photo, create
the job and its task.

A request with an ``Idempotency-Key`` names its job, so a retry or a racing twin replays the same job, and a
retry after the job ended ``failed`` runs it again; a request that fails half-way removes what it wrote unless a
retry with the same key can resume it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from shared.analysis import imaging
from shared.domain import jobs
from shared.errors import ServiceError, Unavailable
from shared.ports import Deps, PhotoNotFound, Snapshot
from shared.usecases import Outcome, utcnow


def upload(deps: Deps, uid: str, data: bytes, content_type: str | None, idempotency_key: str | None) -> Outcome:
    config = deps.config
    job_id = jobs.new_job_id(uid, idempotency_key)
    existing = deps.jobs.get(job_id) if idempotency_key is not None else None
    if existing is not None and existing.data["status"] != jobs.FAILED:
        return _replay(deps, job_id, existing)

    # every check cheaper than decoding, then the quota, and only then the decoding
    imaging.probe(data, content_type, min_side=config.MIN_IMAGE_SIDE, max_pixels=config.MAX_IMAGE_PIXELS)
    now = utcnow()
    # a retry with the same key (its first try stopped at a 503, say) counts once
    retry_after = deps.quotas.take(
        uid, config.UPLOADS_PER_USER_PER_HOUR, now, job_id if idempotency_key is not None else None
    )
    if retry_after:
        raise ServiceError(
            429,
            "rate_limited",
            f"Upload limit of {config.UPLOADS_PER_USER_PER_HOUR} photos an hour reached; try again later.",
            {"Retry-After": str(retry_after)},
        )
    photo = imaging.decode(
        data, content_type, min_side=config.MIN_IMAGE_SIDE, max_pixels=config.MAX_IMAGE_PIXELS, keep_grey=True
    )
    stored = imaging.encode_jpeg(photo.image)  # no metadata at all, sRGB pixels
    path = f"uploads/{uid}/{job_id}.jpg"
    image = _described(path, stored, photo.width, photo.height)
    del photo  # the decoded pixels: not held while the photo travels
    if existing is not None:
        return _restart(deps, job_id, existing, path, stored, image)
    if not deps.photos.put(path, stored, "image/jpeg"):
        image = _stored_before(deps, path)  # an earlier try or a twin with this key stored it: the job is its
    worker = jobs.new_worker(now, config.JOB_TTL_DAYS)
    try:
        created = deps.jobs.create(job_id, jobs.new_job(uid, image, now, config.JOB_TTL_DAYS), worker)
    except Unavailable:
        created = _created_after_all(deps, job_id, worker, idempotency_key, path)
    if not created:  # the same key raced us: one job
        raced = deps.jobs.get(job_id)
        if raced is None:  # and its job is gone again (erased): this upload may not resume it
            raise Unavailable("Firestore")
        return _replay(deps, job_id, raced)
    try:
        deps.queue.enqueue(job_id, worker["taskNonce"])
    except Unavailable:
        if idempotency_key is None:  # nobody can resume this job: leave nothing behind
            _forget(deps, job_id, path)
        raise  # with a key, the retry finds the queued job and enqueues it
    return _accepted(deps, uid, job_id)


def _accepted(deps: Deps, uid: str, job_id: str) -> Outcome:
    status_url = f"{deps.config.STATUS_URL.rstrip('/')}/{job_id}"
    return Outcome(
        202,
        {"jobId": job_id, "status": jobs.QUEUED, "statusUrl": status_url},
        {"Location": status_url},
        {"jobId": job_id, "uid": uid, "status": jobs.QUEUED},
    )


def _replay(deps: Deps, job_id: str, snapshot: Snapshot) -> Outcome:
    job = snapshot.data
    if job["status"] == jobs.QUEUED:  # the first attempt may have stopped before its task was created
        # a job written before workers kept their state apart has no nonce: name this task afresh
        deps.queue.enqueue(job_id, snapshot.worker.get("taskNonce") or jobs.new_nonce())
    return Outcome(
        200,
        jobs.public_view(job_id, job),
        {},
        {"jobId": job_id, "uid": job["ownerUid"], "status": job["status"], "replay": True},
    )


def _restart(deps: Deps, job_id: str, failed: Snapshot, path: str, stored: bytes, image: dict) -> Outcome:
    """The same Idempotency-Key after the job ended ``failed``: the same job runs again, with a new task. Its
    photo is stored again only if it is gone (a stored photo is never replaced)."""
    created = deps.photos.put(path, stored, "image/jpeg")
    change = jobs.restart(utcnow(), deps.config.JOB_TTL_DAYS, image if created else None)
    if deps.jobs.update_if_unchanged(job_id, change.job, failed.update_time, change.worker) is None:
        if created and deps.jobs.get(job_id) is None:  # erased while its photo was stored again: remove it
            _forget(deps, None, path)
        raise Unavailable("Firestore")  # another request restarted or erased it at this moment: retry
    deps.queue.enqueue(job_id, change.worker["taskNonce"])
    return _accepted(deps, failed.data["ownerUid"], job_id)


def _described(path: str, stored: bytes, width: int, height: int) -> dict:
    """The job's ``image`` fields for the stored JPEG ``stored``."""
    return {
        "path": path,
        "contentType": "image/jpeg",
        "sizeBytes": len(stored),
        "width": width,
        "height": height,
        "sha256": hashlib.sha256(stored).hexdigest(),
    }


def _stored_before(deps: Deps, path: str) -> dict:
    """The ``image`` fields of the photo already stored at ``path`` (never replaced), which the job will analyse
    whatever bytes this request sent."""
    try:
        stored = deps.photos.get(path)
    except PhotoNotFound:  # erased in between: the retry stores it afresh
        raise Unavailable("Cloud Storage") from None
    header = imaging.probe(stored, "image/jpeg", min_side=1, max_pixels=2**62)  # it passed the limits once
    return _described(path, stored, header.width, header.height)


def _created_after_all(deps: Deps, job_id: str, worker: dict, idempotency_key: str | None, path: str) -> bool:
    """After the job's create raised, look whether it landed all the same (its answer lost): True if the job is
    this request's own (its task nonce is ``worker``'s), which goes on as created; False if a twin with the same
    key created it, which is replayed. If it is not there, the create's error is raised again: without a key the
    photo and the job are removed first (the job id is this request's alone, and nobody can resume the upload);
    with one the photo stays for the retry, or for a twin that found it stored and is creating the job."""
    try:
        landed = deps.jobs.get(job_id)
    except Unavailable:
        landed = None  # unknown: treated as not there
    if landed is None:
        if idempotency_key is None:
            _forget(deps, job_id, path)
        raise Unavailable("Firestore")
    return landed.worker.get("taskNonce") == worker["taskNonce"]


def _forget(deps: Deps, job_id: str | None, path: str) -> None:
    """Best-effort removal of what a failed upload wrote (the uploader may delete photos for this alone)."""
    undos: list[Callable[[], None]] = [lambda: deps.photos.delete(path)]
    if job_id is not None:
        undos.insert(0, lambda: deps.jobs.delete(job_id))
    for undo in undos:
        try:
            undo()
        except Exception:  # noqa: BLE001 - an undo that fails must not hide the error being answered
            pass
