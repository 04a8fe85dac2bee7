"""The infer use case: one Cloud Tasks delivery of a job. Deliveries are at least once and may overlap; the
compare-and-swap claim and its lease make the result computed and written once."""

from __future__ import annotations

import secrets
import time

from shared.domain import jobs
from shared.errors import ServiceError, Unavailable, described
from shared.ports import Analyze, Deps, PhotoNotFound, Snapshot, UpdateTime
from shared.usecases import Outcome, utcnow

BUSY_POLL_SECONDS = 0.25


def deliver(deps: Deps, analyze: Analyze, job_id: str, retry_count: int) -> Outcome:
    """One Cloud Tasks delivery of a job: claim it, analyse the photo, write the outcome once. An error's log line
    names the job and the delivery."""
    try:
        return _deliver(deps, analyze, job_id, retry_count)
    except ServiceError as exc:
        exc.log |= {"jobId": job_id, "retryCount": retry_count}
        raise


def _deliver(deps: Deps, analyze: Analyze, job_id: str, retry_count: int) -> Outcome:
    config = deps.config
    log = {"jobId": job_id, "retryCount": retry_count}
    owner = secrets.token_hex(8)
    snapshot, decision = _claim_or_wait(deps, job_id, owner)
    if snapshot is None:  # decision.action == "unknown"
        return Outcome(200, {"jobId": job_id, "status": "unknown"}, log=log | {"status": "unknown"})
    if decision.action == "finished":
        return Outcome(
            200,
            {"jobId": job_id, "status": snapshot.data["status"]},
            log=log | {"status": snapshot.data["status"], "duplicate": True},
        )
    if decision.action == "busy":
        raise ServiceError(409, "busy", "Another delivery is analysing this job; retry later.")
    claim = decision.change
    assert claim is not None  # jobs.claim sets it whenever the action is "claim"
    claimed_at = deps.jobs.update_if_unchanged(job_id, claim.job, snapshot.update_time, claim.worker)
    if claimed_at is None:
        raise ServiceError(409, "busy", "Another delivery claimed this job first; retry later.")
    job = {**snapshot.data, **claim.job}
    last_attempt = retry_count + 1 >= config.MAX_ATTEMPTS

    try:
        analysis = analyze(deps.photos.get(job["image"]["path"]))
    except PhotoNotFound:
        change = jobs.finish(
            jobs.FAILED,
            utcnow(),
            error={"code": "image_missing", "message": "The stored photo is gone; upload it again."},
        )
    except ServiceError as exc:
        if isinstance(exc, Unavailable) and not last_attempt:
            _release(deps, job_id, exc.body()["error"], claimed_at)
            raise
        change = jobs.finish(jobs.FAILED, utcnow(), error=exc.body()["error"])
    except Exception as exc:  # a bug or a broken model: retry, and give up on the last attempt
        error = {"code": "analysis_failed", "message": "The analysis failed; upload the photo again later."}
        if not last_attempt:
            _release(deps, job_id, error, claimed_at)
            raise Unavailable("The analysis") from exc  # the request's log line describes exc
        change = jobs.finish(jobs.FAILED, utcnow(), error=error)
        log |= {"severity": "ERROR", **described(exc)}  # the log says why; the job only that it failed
    else:
        change = jobs.finish(analysis.status, utcnow(), result=analysis.result, rejection=analysis.rejection)
    written = deps.jobs.update_if_unchanged(job_id, change.job, claimed_at, change.worker)
    fields = change.job
    log |= {"status": fields["status"], "attempts": job["attempts"], "written": written is not None}
    if fields.get("result"):
        log["timingsMs"] = fields["result"]["timingsMs"]
    return Outcome(200, {"jobId": job_id, "status": fields["status"]}, log=log)


def _release(deps: Deps, job_id: str, error: dict, claimed_at: UpdateTime) -> None:
    change = jobs.release(utcnow(), error)
    deps.jobs.update_if_unchanged(job_id, change.job, claimed_at, change.worker)


def _claim_or_wait(deps: Deps, job_id: str, owner: str) -> tuple[Snapshot | None, jobs.Claim]:
    """Read the job and decide; while another delivery holds a live lease, wait (bounded) for it to finish
    or expire rather than burn a retry: the emulator retries at once, the real queue after its backoff."""
    deadline = time.monotonic() + deps.config.LEASE_SECONDS + 1
    while True:
        snapshot = deps.jobs.get(job_id)
        decision = jobs.claim(
            snapshot.data if snapshot else None,
            snapshot.worker if snapshot else {},
            utcnow(),
            owner,
            deps.config.LEASE_SECONDS,
        )
        if decision.action != "busy" or time.monotonic() > deadline:
            return snapshot, decision
        time.sleep(BUSY_POLL_SECONDS)
