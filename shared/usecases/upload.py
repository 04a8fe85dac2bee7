"""The upload use case: validate the photo, count the quota, store it, create the job and its task.

A request with an ``Idempotency-Key`` names its job, so a retry or a racing twin replays the same job; a request
that fails half-way removes what it wrote unless a retry with the same key can resume it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from shared.analysis import imaging
from shared.domain import jobs
from shared.errors import ServiceError, Unavailable
from shared.ports import Deps
from shared.usecases import Outcome, utcnow


def upload(deps: Deps, uid: str, data: bytes, content_type: str | None, idempotency_key: str | None) -> Outcome:
    config = deps.config
    job_id = jobs.new_job_id(uid, idempotency_key)
    if idempotency_key is not None:
        existing = deps.jobs.get(job_id)
        if existing is not None:
            return _replay(deps, job_id, existing.data)

    photo = imaging.decode(data, content_type, min_side=config.MIN_IMAGE_SIDE, max_pixels=config.MAX_IMAGE_PIXELS)
    now = utcnow()
    retry_after = deps.quotas.take(uid, config.UPLOADS_PER_USER_PER_HOUR, now)
    if retry_after:
        raise ServiceError(
            429,
            "rate_limited",
            f"Upload limit of {config.UPLOADS_PER_USER_PER_HOUR} photos an hour reached; try again later.",
            {"Retry-After": str(retry_after)},
        )

    stored = imaging.encode_jpeg(photo.image)  # no metadata kept: no EXIF location
    path = f"uploads/{uid}/{job_id}.jpg"
    image = {
        "path": path,
        "contentType": "image/jpeg",
        "sizeBytes": len(stored),
        "width": photo.width,
        "height": photo.height,
        "sha256": hashlib.sha256(stored).hexdigest(),
    }
    deps.photos.put(path, stored, "image/jpeg")
    try:
        created = deps.jobs.create(job_id, jobs.new_job(uid, image, now, config.JOB_TTL_DAYS))
    except Unavailable:
        _forget(deps, None, path)
        raise
    if not created:  # the same key raced us: one job
        raced = deps.jobs.get(job_id)
        if raced is None:  # and its job is gone again (erased): this upload may not resume it
            raise Unavailable("Firestore")
        return _replay(deps, job_id, raced.data)
    try:
        deps.queue.enqueue(job_id)
    except Unavailable:
        if idempotency_key is None:  # nobody can resume this job: leave nothing behind
            _forget(deps, job_id, path)
        raise  # with a key, the retry finds the queued job and enqueues it
    status_url = f"{config.STATUS_URL.rstrip('/')}/{job_id}"
    return Outcome(
        202,
        {"jobId": job_id, "status": jobs.QUEUED, "statusUrl": status_url},
        {"Location": status_url},
        {"jobId": job_id, "uid": uid, "status": jobs.QUEUED},
    )


def _replay(deps: Deps, job_id: str, job: dict) -> Outcome:
    if job["status"] == jobs.QUEUED:
        deps.queue.enqueue(job_id)  # the first attempt may have stopped before its task was created
    return Outcome(
        200,
        jobs.public_view(job_id, job),
        {},
        {"jobId": job_id, "uid": job["ownerUid"], "status": job["status"], "replay": True},
    )


def _forget(deps: Deps, job_id: str | None, path: str) -> None:
    """Best-effort removal of what a failed upload wrote (the bucket lifecycle rule catches the rest)."""
    undos: list[Callable[[], None]] = [lambda: deps.photos.delete(path)]
    if job_id is not None:
        undos.insert(0, lambda: deps.jobs.delete(job_id))
    for undo in undos:
        try:
            undo()
        except Unavailable:
            pass
