"""The use cases behind the three functions. They know the job state machine and the adapters' interfaces,
nothing of HTTP: each returns an ``Outcome`` or raises ``ServiceError``."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from shared.analysis import imaging
from shared.domain import jobs
from shared.adapters.storage import PhotoNotFound
from shared.errors import ServiceError, Unavailable


BUSY_POLL_SECONDS = 0.25


@dataclass
class Outcome:
    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    log: dict = field(default_factory=dict)  # fields for the request's log line


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def not_found() -> ServiceError:
    return ServiceError(404, "not_found", "No such job for this account; check the jobId.")


# -- upload ------------------------------------------------------------------------------------------------


def upload(deps, uid: str, data: bytes, content_type: str | None, idempotency_key: str | None) -> Outcome:
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
        return _replay(deps, job_id, deps.jobs.get(job_id).data)
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


def _replay(deps, job_id: str, job: dict) -> Outcome:
    if job["status"] == jobs.QUEUED:
        deps.queue.enqueue(job_id)  # the first attempt may have stopped before its task was created
    return Outcome(
        200,
        jobs.public_view(job_id, job),
        {},
        {"jobId": job_id, "uid": job["ownerUid"], "status": job["status"], "replay": True},
    )


def _forget(deps, job_id: str | None, path: str) -> None:
    """Best-effort removal of what a failed upload wrote (the bucket lifecycle rule catches the rest)."""
    for undo in ([lambda: deps.jobs.delete(job_id)] if job_id else []) + [lambda: deps.photos.delete(path)]:
        try:
            undo()
        except Unavailable:
            pass


# -- infer -------------------------------------------------------------------------------------------------


def deliver(deps, pipeline: Callable, job_id: str, retry_count: int) -> Outcome:
    """One Cloud Tasks delivery of a job: claim it, analyse the photo, write the outcome once."""
    config = deps.config
    log = {"jobId": job_id, "retryCount": retry_count}
    owner = secrets.token_hex(8)
    snapshot, decision = _claim_or_wait(deps, job_id, owner)
    if decision.action == "unknown":
        return Outcome(200, {"jobId": job_id, "status": "unknown"}, log=log | {"status": "unknown"})
    if decision.action == "finished":
        return Outcome(
            200,
            {"jobId": job_id, "status": snapshot.data["status"]},
            log=log | {"status": snapshot.data["status"], "duplicate": True},
        )
    if decision.action == "busy":
        raise ServiceError(409, "busy", "Another delivery is analysing this job; retry later.")
    claimed_at = deps.jobs.update_if_unchanged(job_id, decision.fields, snapshot.update_time)
    if claimed_at is None:
        raise ServiceError(409, "busy", "Another delivery claimed this job first; retry later.")
    job = {**snapshot.data, **decision.fields}
    last_attempt = retry_count + 1 >= config.MAX_ATTEMPTS

    try:
        analysis = pipeline(deps.photos.get(job["image"]["path"]))
    except PhotoNotFound:
        fields = jobs.finish(
            jobs.FAILED,
            utcnow(),
            error={"code": "image_missing", "message": "The stored photo is gone; upload it again."},
        )
    except ServiceError as exc:
        if isinstance(exc, Unavailable) and not last_attempt:
            deps.jobs.update_if_unchanged(job_id, jobs.release(utcnow(), exc.body()["error"]), claimed_at)
            raise
        fields = jobs.finish(jobs.FAILED, utcnow(), error=exc.body()["error"])
    except Exception as exc:  # a bug or a broken model: retry, and give up on the last attempt
        error = {"code": "analysis_failed", "message": "The analysis failed; upload the photo again later."}
        if not last_attempt:
            deps.jobs.update_if_unchanged(job_id, jobs.release(utcnow(), error), claimed_at)
            raise Unavailable("The analysis") from exc
        fields = jobs.finish(jobs.FAILED, utcnow(), error=error)
    else:
        fields = jobs.finish(analysis.status, utcnow(), result=analysis.result, rejection=analysis.rejection)
    written = deps.jobs.update_if_unchanged(job_id, fields, claimed_at)
    log |= {"status": fields["status"], "attempts": job["attempts"], "written": written is not None}
    if fields.get("result"):
        log["timingsMs"] = fields["result"]["timingsMs"]
    return Outcome(200, {"jobId": job_id, "status": fields["status"]}, log=log)


def _claim_or_wait(deps, job_id: str, owner: str):
    """Read the job and decide; while another delivery holds a live lease, wait (bounded) for it to finish
    or expire rather than burn a retry: the emulator retries at once, the real queue after its backoff."""
    deadline = time.monotonic() + deps.config.LEASE_SECONDS + 1
    while True:
        snapshot = deps.jobs.get(job_id)
        decision = jobs.claim(snapshot.data if snapshot else None, utcnow(), owner, deps.config.LEASE_SECONDS)
        if decision.action != "busy" or time.monotonic() > deadline:
            return snapshot, decision
        time.sleep(BUSY_POLL_SECONDS)


# -- status ------------------------------------------------------------------------------------------------


def read(deps, uid: str, job_id: str) -> Outcome:
    snapshot = _owned(deps, uid, job_id)
    job = snapshot.data
    stale = dt.timedelta(seconds=deps.config.STALE_AFTER_SECONDS)
    fields = jobs.abandoned(job, utcnow(), deps.config.MAX_ATTEMPTS, stale)
    if fields is not None and deps.jobs.update_if_unchanged(job_id, fields, snapshot.update_time):
        job = {**job, **fields}
    return Outcome(200, jobs.public_view(job_id, job), log={"jobId": job_id, "uid": uid, "status": job["status"]})


def erase(deps, uid: str, job_id: str) -> Outcome:
    """Right to erasure: the stored photo, then the job document."""
    snapshot = _owned(deps, uid, job_id)
    deps.photos.delete(snapshot.data["image"]["path"])
    deps.jobs.delete(job_id)
    return Outcome(204, None, log={"jobId": job_id, "uid": uid, "status": "deleted"})


def _owned(deps, uid: str, job_id: str):
    if not jobs.is_job_id(job_id):
        raise not_found()
    snapshot = deps.jobs.get(job_id)
    if snapshot is None or snapshot.data.get("ownerUid") != uid:
        raise not_found()
    return snapshot
