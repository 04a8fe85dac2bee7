"""The status use cases: read a job (ending one nobody will finish) and erase it, for its owner only."""

from __future__ import annotations

import datetime as dt

from shared.domain import jobs
from shared.ports import Deps, Snapshot
from shared.usecases import Outcome, not_found, utcnow


def read(deps: Deps, uid: str, job_id: str) -> Outcome:
    snapshot = _owned(deps, uid, job_id)
    job = snapshot.data
    stale = dt.timedelta(seconds=deps.config.STALE_AFTER_SECONDS)
    fields = jobs.abandoned(job, utcnow(), deps.config.MAX_ATTEMPTS, stale)
    if fields is not None and deps.jobs.update_if_unchanged(job_id, fields, snapshot.update_time):
        job = {**job, **fields}
    return Outcome(200, jobs.public_view(job_id, job), log={"jobId": job_id, "uid": uid, "status": job["status"]})


def erase(deps: Deps, uid: str, job_id: str) -> Outcome:
    """Right to erasure: the stored photo, then the job document."""
    snapshot = _owned(deps, uid, job_id)
    deps.photos.delete(snapshot.data["image"]["path"])
    deps.jobs.delete(job_id)
    return Outcome(204, None, log={"jobId": job_id, "uid": uid, "status": "deleted"})


def _owned(deps: Deps, uid: str, job_id: str) -> Snapshot:
    if not jobs.is_job_id(job_id):
        raise not_found()
    snapshot = deps.jobs.get(job_id)
    if snapshot is None or snapshot.data.get("ownerUid") != uid:
        raise not_found()
    return snapshot
