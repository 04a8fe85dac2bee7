"""The job and its state machine: queued → processing → done | rejected | failed. Pure: no I/O, no HTTP.

A delivery *claims* a job by moving it to ``processing`` with a lease; only the holder of a live lease may
finish it, so duplicate or concurrent deliveries produce one result. A lease that expired (its delivery
crashed) may be taken over. A failed attempt hands the job back to ``queued``, except the last one, which
ends it ``failed``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

QUEUED, PROCESSING, DONE, REJECTED, FAILED = "queued", "processing", "done", "rejected", "failed"
TERMINAL = frozenset({DONE, REJECTED, FAILED})
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
INTERNAL_FIELDS = ("leaseOwner", "leaseUntil")


def new_job_id(uid: str, idempotency_key: str | None) -> str:
    """Random, or derived from (uid, Idempotency-Key) so the same key always names the same job."""
    if idempotency_key is None:
        return secrets.token_hex(12)
    return hashlib.sha256(f"{uid}\x00{idempotency_key}".encode()).hexdigest()[:24]


def is_job_id(value: str) -> bool:
    return bool(JOB_ID.match(value or ""))


def new_job(uid: str, image: dict, now: dt.datetime, ttl_days: int) -> dict:
    return {
        "ownerUid": uid,
        "status": QUEUED,
        "createdAt": now,
        "updatedAt": now,
        "expireAt": now + dt.timedelta(days=ttl_days),
        "image": image,
        "attempts": 0,
    }


@dataclass(frozen=True)
class Claim:
    """What a delivery may do with a job: ``claim`` it (with ``fields`` to write), or answer at once."""

    action: str  # "claim", "finished", "busy", "unknown"
    fields: dict | None = None


def claim(job: dict | None, now: dt.datetime, owner: str, lease_seconds: int) -> Claim:
    if job is None:
        return Claim("unknown")
    if job["status"] in TERMINAL:
        return Claim("finished")
    lease_until = job.get("leaseUntil")
    if job["status"] == PROCESSING and lease_until is not None and lease_until > now:
        return Claim("busy")
    return Claim(
        "claim",
        {
            "status": PROCESSING,
            "attempts": job.get("attempts", 0) + 1,
            "leaseOwner": owner,
            "leaseUntil": now + dt.timedelta(seconds=lease_seconds),
            "updatedAt": now,
        },
    )


def finish(
    status: str,
    now: dt.datetime,
    *,
    result: dict | None = None,
    rejection: dict | None = None,
    error: dict | None = None,
) -> dict:
    """Fields that end a claimed job."""
    assert status in TERMINAL
    fields = {"status": status, "updatedAt": now, "leaseOwner": None, "leaseUntil": None}
    for name, value in (("result", result), ("rejection", rejection), ("error", error)):
        if value is not None:
            fields[name] = value
    return fields


def release(now: dt.datetime, error: dict) -> dict:
    """Fields that hand a claimed job back for the next attempt."""
    return {"status": QUEUED, "updatedAt": now, "leaseOwner": None, "leaseUntil": None, "lastError": error}


def abandoned(job: dict, now: dt.datetime, max_attempts: int, stale_after: dt.timedelta) -> dict | None:
    """Fields that end a job nobody will finish (last delivery crashed, or the queue gave up), else None."""
    if job["status"] in TERMINAL:
        return None
    lease_until = job.get("leaseUntil")
    crashed_last = (
        job["status"] == PROCESSING
        and job.get("attempts", 0) >= max_attempts
        and lease_until is not None
        and lease_until <= now
    )
    if crashed_last or job["updatedAt"] + stale_after <= now:
        return finish(
            FAILED,
            now,
            error={"code": "not_processed", "message": "The analysis could not be completed; upload the photo again."},
        )
    return None


def public_view(job_id: str, job: dict) -> dict:
    """The job as the status function returns it: internal fields dropped, timestamps as RFC 3339."""
    view = {"jobId": job_id}
    for key, value in job.items():
        if key in INTERNAL_FIELDS or key == "lastError":
            continue
        view[key] = value.isoformat().replace("+00:00", "Z") if isinstance(value, dt.datetime) else value
    return view
