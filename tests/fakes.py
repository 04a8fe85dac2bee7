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
from shared.ports import DELETE, PhotoNotFound, Snapshot, Unavailable, UpdateTime


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
    """The jobs collection and each job's private worker state; every write gives the document a new update
    time, as Firestore does, and writes the worker state in the same step (as the adapter's batch)."""

    name = "Firestore"

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self._clock = itertools.count(1)

    def get(self, job_id: str) -> Snapshot | None:
        self._enter("get")
        if job_id not in self.docs:
            return None
        data, update_time = self.docs[job_id]
        return Snapshot(copy.deepcopy(data), update_time, copy.deepcopy(self.workers.get(job_id, {})))

    def create(self, job_id: str, job: dict[str, Any], worker: dict[str, Any] | None = None) -> bool:
        self._enter("create")
        if job_id in self.docs:
            return False
        self.docs[job_id] = (copy.deepcopy(job), next(self._clock))
        self.workers[job_id] = copy.deepcopy(worker or {})
        return True

    def update_if_unchanged(
        self, job_id: str, fields: dict[str, Any], update_time: UpdateTime, worker: dict[str, Any] | None = None
    ) -> UpdateTime | None:
        self._enter("update")
        if job_id not in self.docs or self.docs[job_id][1] != update_time:
            return None
        self.docs[job_id] = (_merged(self.docs[job_id][0], fields), next(self._clock))
        self.workers[job_id] = _merged(self.workers.get(job_id, {}), worker or {})
        return self.docs[job_id][1]

    def delete(self, job_id: str) -> None:
        self._enter("delete")
        self.docs.pop(job_id, None)
        self.workers.pop(job_id, None)

    def with_status(self, statuses: list[str]) -> list[str]:
        self._enter("query")
        return [job_id for job_id, (data, _) in self.docs.items() if data.get("status") in statuses]

    def data(self, job_id: str) -> dict[str, Any]:
        """The stored document (for assertions)."""
        return self.docs[job_id][0]


def _merged(data: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    merged = {**data, **copy.deepcopy(fields)}
    return {name: value for name, value in merged.items() if value is not DELETE}


class FakePhotos(_Service):
    name = "Cloud Storage"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, path: str, data: bytes, content_type: str) -> bool:
        self._enter("put")
        if path in self.objects:  # created once, never replaced
            return False
        self.objects[path] = (data, content_type)
        return True

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
        self.keys: dict[tuple[str, dt.datetime], set[str]] = {}

    def take(self, uid: str, limit: int, now: dt.datetime, key: str | None = None) -> int:
        self._enter("take")
        window = now.replace(minute=0, second=0, microsecond=0)
        if key is not None and key in self.keys.get((uid, window), set()):
            return 0
        count = self.counts.get((uid, window), 0)
        if count >= limit:
            return max(1, int((window + dt.timedelta(hours=1) - now).total_seconds()))
        self.counts[(uid, window)] = count + 1
        if key is not None:
            self.keys.setdefault((uid, window), set()).add(key)
        return 0


class FakeQueue(_Service):
    """Named tasks as Cloud Tasks keeps them: a name, once used, stays reserved (the real service: for about an
    hour after its task ran), so a second ``enqueue`` with that name is a no-op. ``deliveries(copies=2)`` hands
    each pending task out twice, as at-least-once delivery may."""

    name = "The task queue"

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []  # every task name ever used, in order
        self.created: list[str] = []  # the job of each task created, in order
        self.pending: list[str] = []

    def enqueue(self, job_id: str, nonce: str) -> None:
        self._enter("enqueue")
        name = f"{job_id}-{nonce}"
        if name not in self.names:
            self.names.append(name)
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
