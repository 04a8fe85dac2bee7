"""Jobs and upload quotas in Firestore, with compare-and-swap writes on the document's update time."""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any, cast

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.errors import Unavailable
from shared.ports import DELETE, Snapshot, UpdateTime

TIMEOUT = 10.0
# The quota document is one per user, so a user's parallel uploads contend for it: each lost compare-and-swap
# reads again after a random pause that doubles up to a cap (full jitter), so that all of them get through.
QUOTA_TRIES, QUOTA_BACKOFF_SECONDS, QUOTA_BACKOFF_CAP_SECONDS = 40, 0.01, 0.25
# A query stream asks its retry policy whether to resume after an error, so it needs one: this one never retries,
# as retry=None does elsewhere (the caller answers 503 and its own caller retries).
NO_RETRY = Retry(predicate=lambda exc: False)
TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.RetryError,
    gexc.TooManyRequests,
    gexc.Aborted,
    gexc.ResourceExhausted,
)


def make_client(project: str, emulator_host: str) -> firestore.Client:
    if emulator_host:
        return firestore.Client(project=project, credentials=AnonymousCredentials())
    return firestore.Client(project=project)


class JobStore:
    """Each job is ``jobs/{jobId}`` (what its owner may read) and ``jobs/{jobId}/private/worker`` (the worker's
    state: the security rules let no client read it). Both are written in one atomic batch whose preconditions are
    both documents' update times: a read of the two is not one snapshot (the emulator's, even in a read-only
    transaction, can pair a new document with an old worker state), so a decision taken on a torn read must not
    land. The version a snapshot carries is the pair of update times."""

    WORKER = ("private", "worker")

    def __init__(self, client: firestore.Client, collection: str = "jobs"):
        self.client = client
        self.collection = collection

    def _ref(self, job_id: str):
        return self.client.collection(self.collection).document(job_id)

    def _worker_ref(self, job_id: str):
        return self._ref(job_id).collection(self.WORKER[0]).document(self.WORKER[1])

    def get(self, job_id: str) -> Snapshot | None:
        job_ref, worker_ref = self._ref(job_id), self._worker_ref(job_id)
        try:
            snaps = {
                snap.reference.path: snap
                for snap in self.client.get_all([job_ref, worker_ref], timeout=TIMEOUT, retry=None)
            }
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc
        job, worker = snaps[job_ref.path], snaps[worker_ref.path]
        if not job.exists:
            return None
        worker_data, worker_time = ((worker.to_dict() or {}), worker.update_time) if worker.exists else ({}, None)
        return Snapshot(job.to_dict() or {}, (job.update_time, worker_time), worker_data)

    def create(self, job_id: str, job: dict, worker: dict | None = None) -> bool:
        """Create the job and its worker state; False if the job already exists."""
        batch = self.client.batch()
        batch.create(self._ref(job_id), job)
        batch.set(self._worker_ref(job_id), worker or {})
        try:
            batch.commit(timeout=TIMEOUT, retry=None)
            return True
        except gexc.AlreadyExists:  # not Conflict: its subclass Aborted is contention, retried as transient
            return False
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc

    def update_if_unchanged(
        self, job_id: str, fields: dict, update_time: UpdateTime, worker: dict | None = None
    ) -> UpdateTime | None:
        """Write ``fields`` (and ``worker``) only if nobody wrote either document since ``update_time`` (the pair a
        snapshot carries); the new pair, or None."""
        job_time, worker_time = cast(tuple[Any, Any], update_time)
        batch = self.client.batch()
        batch.update(
            self._ref(job_id), _firestore_values(fields), option=self.client.write_option(last_update_time=job_time)
        )
        if worker and worker_time is None:
            batch.create(
                self._worker_ref(job_id), {name: value for name, value in worker.items() if value is not DELETE}
            )
        elif worker:
            batch.update(
                self._worker_ref(job_id),
                _firestore_values(worker),
                option=self.client.write_option(last_update_time=worker_time),
            )
        try:
            written = batch.commit(timeout=TIMEOUT, retry=None)[0].update_time
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.AlreadyExists):
            return None
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc
        return written, (written if worker else worker_time)

    def delete(self, job_id: str) -> None:
        batch = self.client.batch()
        batch.delete(self._worker_ref(job_id))
        batch.delete(self._ref(job_id))
        try:
            batch.commit(timeout=TIMEOUT, retry=None)
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc

    def with_status(self, statuses: list[str]) -> list[str]:
        """The ids of the jobs whose status is one of ``statuses`` (a single-field index: no composite needed), read
        in full before the caller works on them, so the query's timeout covers the query alone."""
        query = self.client.collection(self.collection).where(filter=FieldFilter("status", "in", statuses))
        try:
            return [snap.id for snap in query.select([]).stream(timeout=TIMEOUT, retry=NO_RETRY)]
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc


def _firestore_values(fields: dict) -> dict:
    return {name: firestore.DELETE_FIELD if value is DELETE else value for name, value in fields.items()}


class QuotaStore:
    """Uploads per user per clock hour, shared by every instance through one document per user."""

    def __init__(self, client: firestore.Client, collection: str = "quotas"):
        self.client = client
        self.collection = collection

    def take(self, uid: str, limit: int, now: dt.datetime, key: str | None = None) -> int:
        """Count one upload; 0 if allowed, else the seconds until the quota resets. The hour's keys are kept in
        the document (at most ``limit`` of them), so a key counts once."""
        window = now.replace(minute=0, second=0, microsecond=0)
        ref = self.client.collection(self.collection).document(uid)
        try:
            for attempt in range(QUOTA_TRIES):
                if attempt:
                    time.sleep(random.uniform(0, min(QUOTA_BACKOFF_CAP_SECONDS, QUOTA_BACKOFF_SECONDS * 2**attempt)))
                snap = ref.get(timeout=TIMEOUT, retry=None)
                data = (snap.to_dict() or {}) if snap.exists else {}
                this_hour = data.get("window") == window
                count, keys = (data.get("count", 0), data.get("keys", [])) if this_hour else (0, [])
                if key is not None and key in keys:
                    return 0
                if count >= limit:
                    return max(1, int((window + dt.timedelta(hours=1) - now).total_seconds()))
                fields = {
                    "window": window,
                    "count": count + 1,
                    "keys": keys + ([key] if key is not None else []),
                    "expireAt": window + dt.timedelta(hours=2),
                }
                try:
                    if snap.exists:
                        ref.update(
                            fields,
                            option=self.client.write_option(last_update_time=snap.update_time),
                            timeout=TIMEOUT,
                            retry=None,
                        )
                    else:
                        ref.create(fields, timeout=TIMEOUT, retry=None)
                    return 0
                except (gexc.FailedPrecondition, gexc.Conflict):  # Conflict: AlreadyExists, or Aborted contention
                    continue  # another instance counted at the same moment: read again
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc
        contended = Unavailable("Firestore")
        contended.log["cause"] = f"the quota document of {uid} stayed contended over {QUOTA_TRIES} tries"
        raise contended
