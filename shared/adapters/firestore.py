"""Jobs and upload quotas in Firestore, with compare-and-swap writes on the document's update time."""

from __future__ import annotations

import datetime as dt

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from shared.errors import Unavailable
from shared.ports import Snapshot, UpdateTime

TIMEOUT = 10.0
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
    def __init__(self, client: firestore.Client, collection: str = "jobs"):
        self.client = client
        self.collection = collection

    def _ref(self, job_id: str):
        return self.client.collection(self.collection).document(job_id)

    def get(self, job_id: str) -> Snapshot | None:
        try:
            snap = self._ref(job_id).get(timeout=TIMEOUT, retry=None)
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc
        return Snapshot(snap.to_dict(), snap.update_time) if snap.exists else None

    def create(self, job_id: str, job: dict) -> bool:
        """Create the document; False if it already exists."""
        try:
            self._ref(job_id).create(job, timeout=TIMEOUT, retry=None)
            return True
        except gexc.Conflict:
            return False
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc

    def update_if_unchanged(self, job_id: str, fields: dict, update_time: UpdateTime) -> UpdateTime | None:
        """Write ``fields`` only if nobody wrote since ``update_time``; the new update time, or None."""
        option = self.client.write_option(last_update_time=update_time)
        try:
            return self._ref(job_id).update(fields, option=option, timeout=TIMEOUT, retry=None).update_time
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Conflict):
            return None
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc

    def delete(self, job_id: str) -> None:
        try:
            self._ref(job_id).delete(timeout=TIMEOUT, retry=None)
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc


class QuotaStore:
    """Uploads per user per clock hour, shared by every instance through one document per user."""

    def __init__(self, client: firestore.Client, collection: str = "quotas"):
        self.client = client
        self.collection = collection

    def take(self, uid: str, limit: int, now: dt.datetime) -> int:
        """Count one upload; 0 if allowed, else the seconds until the quota resets."""
        window = now.replace(minute=0, second=0, microsecond=0)
        ref = self.client.collection(self.collection).document(uid)
        try:
            for _ in range(10):
                snap = ref.get(timeout=TIMEOUT, retry=None)
                data = (snap.to_dict() or {}) if snap.exists else {}
                count = data.get("count", 0) if data.get("window") == window else 0
                if count >= limit:
                    return max(1, int((window + dt.timedelta(hours=1) - now).total_seconds()))
                fields = {"window": window, "count": count + 1, "expireAt": window + dt.timedelta(hours=2)}
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
                except (gexc.FailedPrecondition, gexc.Conflict):
                    continue  # another instance counted at the same moment: read again
        except TRANSIENT as exc:
            raise Unavailable("Firestore") from exc
        raise Unavailable("Firestore")
