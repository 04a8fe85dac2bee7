"""In-memory fakes of the ports (``shared.ports``), for fast unit tests of the use cases.

They behave like the real services where the use cases rely on it: compare-and-swap on a job's update time,
not-found, idempotent deletes, a named task created once, and at-least-once delivery (a task may arrive twice).
``fail`` makes an operation raise ``Unavailable`` as a failing service would; ``before`` runs a callback before
an operation, to let another request or delivery act at exactly that moment (a race).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

from shared import config as config_module
from shared.bootstrap import Dependencies, bootstrap
from shared.logs import JsonLog
from shared.ports import PhotoNotFound, Snapshot, Unavailable, UpdateTime


class _Service:
    name = "A service"

    def __init__(self) -> None:
        self.fail: set[str] = set()  # operations that raise Unavailable
        self.before: dict[str, Callable[[], None]] = {}  # operation -> callback run (once) before it

    def _enter(self, operation: str) -> None:
        hook = self.before.pop(operation, None)
        if hook is not None:
            hook()
        if operation in self.fail:
            raise Unavailable(self.name)


class FakeJobs(_Service):
    """The jobs collection; every write gives the document a new update time, as Firestore does."""

    name = "Firestore"

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self._clock = itertools.count(1)

    def get(self, job_id: str) -> Snapshot | None:
        self._enter("get")
        if job_id not in self.docs:
            return None
        data, update_time = self.docs[job_id]
        return Snapshot(copy.deepcopy(data), update_time)

    def create(self, job_id: str, job: dict[str, Any]) -> bool:
        self._enter("create")
        if job_id in self.docs:
            return False
        self.docs[job_id] = (copy.deepcopy(job), next(self._clock))
        return True

    def update_if_unchanged(self, job_id: str, fields: dict[str, Any], update_time: UpdateTime) -> UpdateTime | None:
        self._enter("update")
        if job_id not in self.docs or self.docs[job_id][1] != update_time:
            return None
        data = {**self.docs[job_id][0], **copy.deepcopy(fields)}
        self.docs[job_id] = (data, next(self._clock))
        return self.docs[job_id][1]

    def delete(self, job_id: str) -> None:
        self._enter("delete")
        self.docs.pop(job_id, None)

    def data(self, job_id: str) -> dict[str, Any]:
        """The stored document (for assertions)."""
        return self.docs[job_id][0]


class FakePhotos(_Service):
    name = "Cloud Storage"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, path: str, data: bytes, content_type: str) -> None:
        self._enter("put")
        self.objects[path] = (data, content_type)

    def get(self, path: str) -> bytes:
        self._enter("get")
        if path not in self.objects:
            raise PhotoNotFound(path)
        return self.objects[path][0]

    def delete(self, path: str) -> None:
        self._enter("delete")
        self.objects.pop(path, None)


class FakeQuotas(_Service):
    """Uploads per user per clock hour, like the Firestore quota document."""

    name = "Firestore"

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, dt.datetime], int] = {}

    def take(self, uid: str, limit: int, now: dt.datetime) -> int:
        self._enter("take")
        window = now.replace(minute=0, second=0, microsecond=0)
        count = self.counts.get((uid, window), 0)
        if count >= limit:
            return max(1, int((window + dt.timedelta(hours=1) - now).total_seconds()))
        self.counts[(uid, window)] = count + 1
        return 0


class FakeQueue(_Service):
    """Named tasks, one per job, as Cloud Tasks keeps them: a second ``enqueue`` of a job that has a task is a
    no-op. ``deliveries(copies=2)`` hands each pending task out twice, as at-least-once delivery may."""

    name = "The task queue"

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []  # every task ever created, in order
        self.pending: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self._enter("enqueue")
        if job_id not in self.created:
            self.created.append(job_id)
            self.pending.append(job_id)

    def deliveries(self, copies: int = 1) -> list[str]:
        """Take the pending tasks; each job id ``copies`` times."""
        taken, self.pending = self.pending, []
        return [job_id for job_id in taken for _ in range(copies)]


def fake_deps(**settings: str) -> Dependencies:
    """Dependencies on fresh fakes, with the default configuration and ``settings`` (environment spelling)."""
    config = config_module.load(settings)
    return bootstrap(
        config,
        JsonLog("ERROR"),
        jobs=FakeJobs(),
        photos=FakePhotos(),
        quotas=FakeQuotas(),
        queue=FakeQueue(),
    )
