"""The job and its state machine: queued → processing → done | rejected | failed. Pure: no I/O, no HTTP.

A delivery *claims* a job by moving it to ``processing`` with a lease; only the holder of a live lease may
finish it, so duplicate or concurrent deliveries produce one result. A lease that expired (its delivery
crashed) may be taken over. A failed attempt hands the job back to ``queued``, except the last one, which
ends it ``failed``; a ``failed`` job may be started again.

Two records per job: the job document, which its owner reads (the contract's fields only), and the worker's
private state (lease, last error, the nonce that names the current task), which no client can read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from shared.ports import DELETE

QUEUED, PROCESSING, DONE, REJECTED, FAILED = "queued", "processing", "done", "rejected", "failed"
TERMINAL = frozenset({DONE, REJECTED, FAILED})
JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # matched in full: no trailing newline slips through
NOT_PROCESSED = {"code": "not_processed", "message": "The analysis could not be completed; upload the photo again."}


def new_job_id(uid: str, idempotency_key: str | None) -> str:
    """Random, or derived from (uid, Idempotency-Key) so the same key always names the same job."""
    if idempotency_key is None:
        return secrets.token_hex(12)
    return hashlib.sha256(f"{uid}\x00{idempotency_key}".encode()).hexdigest()[:24]


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def new_job(uid: str, image: dict, now: dt.datetime, ttl_days: int) -> dict:
    """The job document: the contract's fields only (the owner's listener sees every field)."""
    return {
        "ownerUid": uid,
        "status": QUEUED,
        "createdAt": now,
        "updatedAt": now,
        "expireAt": expire_at(now, ttl_days),
        "image": image,
        "attempts": 0,
    }


def new_worker(now: dt.datetime, ttl_days: int) -> dict:
    """The worker's private state of a new job: no lease yet, and the nonce that names this run's task."""
    return {"taskNonce": new_nonce(), "expireAt": expire_at(now, ttl_days)}


def expire_at(now: dt.datetime, ttl_days: int) -> dt.datetime:
    """When Firestore's TTL deletes a job (and its worker document) that starts, or starts again, at ``now``."""
    return now + dt.timedelta(days=ttl_days)


def new_nonce() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Change:
    """What to write: ``job`` into the job document, ``worker`` into its private worker state."""

    job: dict
    worker: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """What a delivery may do with a job: ``claim`` it (with ``change`` to write), or answer at once."""

    action: str  # "claim", "finished", "busy", "unknown"
    change: Change | None = None


def claim(job: dict | None, worker: dict, now: dt.datetime, owner: str, lease_seconds: int) -> Claim:
    if job is None:
        return Claim("unknown")
    if job["status"] in TERMINAL:
        return Claim("finished")
    lease_until = worker.get("leaseUntil")
    if job["status"] == PROCESSING and lease_until is not None and lease_until > now:
        return Claim("busy")
    return Claim(
        "claim",
        Change(
            {"status": PROCESSING, "attempts": job.get("attempts", 0) + 1, "updatedAt": now},
            {"leaseOwner": owner, "leaseUntil": now + dt.timedelta(seconds=lease_seconds)},
        ),
    )


NO_LEASE = {"leaseOwner": None, "leaseUntil": None}


def finish(
    status: str,
    now: dt.datetime,
    *,
    result: dict | None = None,
    rejection: dict | None = None,
    error: dict | None = None,
) -> Change:
    """What ends a claimed job."""
    assert status in TERMINAL
    fields: dict = {"status": status, "updatedAt": now}
    for name, value in (("result", result), ("rejection", rejection), ("error", error)):
        if value is not None:
            fields[name] = value
    return Change(fields, dict(NO_LEASE))


def release(now: dt.datetime, error: dict) -> Change:
    """What hands a claimed job back for the next attempt; the error stays with the worker."""
    return Change({"status": QUEUED, "updatedAt": now}, {**NO_LEASE, "lastError": error})


def restart(now: dt.datetime, ttl_days: int, image: dict | None = None) -> Change:
    """What starts a ``failed`` job again (the same Idempotency-Key once more): queued, no error, no attempt
    counted, a new nonce so that its task gets a name Cloud Tasks has not seen, and ``ttl_days`` more to live, so
    that a photo stored again never outlives the job through which its owner erases it. ``image``: the photo
    stored anew, when the old one was gone."""
    expires = expire_at(now, ttl_days)
    fields: dict = {"status": QUEUED, "updatedAt": now, "expireAt": expires, "attempts": 0, "error": DELETE}
    if image is not None:
        fields["image"] = image
    return Change(fields, {**NO_LEASE, "lastError": None, "taskNonce": new_nonce(), "expireAt": expires})


def abandoned(job: dict, worker: dict, now: dt.datetime, max_attempts: int, stale_after: dt.timedelta) -> Change | None:
    """What ends a job nobody will finish (last delivery crashed, or the queue gave up), else None."""
    if job["status"] in TERMINAL:
        return None
    lease_until = worker.get("leaseUntil")
    crashed_last = (
        job["status"] == PROCESSING
        and job.get("attempts", 0) >= max_attempts
        and lease_until is not None
        and lease_until <= now
    )
    if crashed_last or job["updatedAt"] + stale_after <= now:
        return finish(FAILED, now, error=NOT_PROCESSED)
    return None


def public_view(job_id: str, job: dict) -> dict:
    """The job as the status function returns it: its document, timestamps as RFC 3339."""
    view = {"jobId": job_id}
    for key, value in job.items():
        view[key] = value.isoformat().replace("+00:00", "Z") if isinstance(value, dt.datetime) else value
    return view
