"""The status use cases: read a job (ending one nobody will finish) and erase it, for its owner only; and the
sweep, which ends every such job without anyone reading it."""

from __future__ import annotations

import datetime as dt

from shared.domain import jobs
from shared.ports import Deps, Snapshot
from shared.usecases import Outcome, not_found, utcnow


def read(deps: Deps, uid: str, job_id: str) -> Outcome:
    snapshot = _owned(deps, uid, job_id)
    job, _ = end_if_abandoned(deps, job_id, snapshot)
    return Outcome(200, jobs.public_view(job_id, job), log={"jobId": job_id, "uid": uid, "status": job["status"]})


def sweep(deps: Deps) -> Outcome:
    """End as ``failed`` every job that no delivery will finish, so that listeners, which never call GET, see it
    end. Cloud Scheduler runs it (deploy/deploy.sh); locally ``make sweep``."""
    checked, ended = 0, []
    for job_id in deps.jobs.with_status([jobs.QUEUED, jobs.PROCESSING]):
        snapshot = deps.jobs.get(job_id)
        if snapshot is None:  # erased meanwhile
            continue
        checked += 1
        if end_if_abandoned(deps, job_id, snapshot)[1]:
            ended.append(job_id)
    return Outcome(200, {"checked": checked, "failed": len(ended)}, log={"checked": checked, "failed": ended})


def end_if_abandoned(deps: Deps, job_id: str, snapshot: Snapshot) -> tuple[dict, bool]:
    """The job, written ``failed`` first if nobody will finish it (its last delivery crashed, or the queue gave up),
    and whether this call wrote it so."""
    stale = dt.timedelta(seconds=deps.config.STALE_AFTER_SECONDS)
    change = jobs.abandoned(snapshot.data, snapshot.worker, utcnow(), deps.config.MAX_ATTEMPTS, stale)
    if change is None:
        return snapshot.data, False
    if deps.jobs.update_if_unchanged(job_id, change.job, snapshot.update_time, change.worker):
        return {**snapshot.data, **change.job}, True
    fresh = deps.jobs.get(job_id)  # a delivery wrote first (it finished or claimed the job): show what it wrote
    return (fresh.data if fresh is not None else snapshot.data), False


def erase(deps: Deps, uid: str, job_id: str) -> Outcome:
    """Right to erasure: the stored photo, then the job document and its worker state, then the photo again: a
    retry after a failure (its ``Idempotency-Key`` restarting the job) may have stored it again in between, and
    once the job is gone no restart can store it for good."""
    snapshot = _owned(deps, uid, job_id)
    path = snapshot.data["image"]["path"]
    deps.photos.delete(path)
    deps.jobs.delete(job_id)
    deps.photos.delete(path)
    return Outcome(204, None, log={"jobId": job_id, "uid": uid, "status": "deleted"})


def _owned(deps: Deps, uid: str, job_id: str) -> Snapshot:
    if not jobs.is_job_id(job_id):
        raise not_found()
    snapshot = deps.jobs.get(job_id)
    if snapshot is None or snapshot.data.get("ownerUid") != uid:
        raise not_found()
    return snapshot
