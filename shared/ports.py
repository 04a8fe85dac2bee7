"""The ports the use cases depend on: what they need from jobs, photos, quotas and the queue, and the errors
those raise. The adapters in ``shared/adapters/`` implement them on Google Cloud; ``tests/fakes.py`` in memory.

Every port raises ``Unavailable`` when its service fails in a way a retry may cure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.config import Config
from shared.errors import Unavailable

__all__ = [
    "Analysis",
    "Analyze",
    "Deps",
    "DELETE",
    "Jobs",
    "PhotoNotFound",
    "Photos",
    "Queue",
    "Quotas",
    "Snapshot",
    "Unavailable",
    "UpdateTime",
]

UpdateTime = Hashable  # opaque: the store's version stamp of a job (Firestore: both documents' update times)


@dataclass(frozen=True)
class Snapshot:
    """A job: its document (what the owner's listener sees: the contract's fields only), the update time a
    conditional write must match, and the worker's private state of it (lease, last error, task nonce), kept
    where no client can read it."""

    data: dict[str, Any]
    update_time: UpdateTime
    worker: dict[str, Any] = field(default_factory=dict)


class PhotoNotFound(Exception):
    """The photo at this path does not exist (erased, or expired by the bucket's lifecycle rule)."""


class Jobs(Protocol):
    """The ``jobs`` collection, with compare-and-swap writes on a job's version. Each job's worker state is
    written together with its document, atomically, and the version covers both: a write based on a read that
    missed a change to either does not land."""

    def get(self, job_id: str) -> Snapshot | None:
        """The job, or None if there is none."""
        ...

    def create(self, job_id: str, job: dict[str, Any], worker: dict[str, Any] | None = None) -> bool:
        """Create the job (and its worker state); False (and nothing written) if it already exists."""
        ...

    def update_if_unchanged(
        self, job_id: str, fields: dict[str, Any], update_time: UpdateTime, worker: dict[str, Any] | None = None
    ) -> UpdateTime | None:
        """Merge ``fields`` (a value ``DELETE`` removes its field) and ``worker`` only if nobody wrote since
        ``update_time`` (its document or its worker state); the new version, or None if the job changed or is
        gone."""
        ...

    def delete(self, job_id: str) -> None:
        """Delete the job and its worker state; nothing happens if it is gone already."""
        ...

    def with_status(self, statuses: list[str]) -> list[str]:
        """The ids of the jobs whose status is one of ``statuses``."""
        ...


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"

    def __deepcopy__(self, memo: dict) -> _Delete:  # one marker, compared by identity
        return self


DELETE = _Delete()  # as a field's value in ``Jobs.update_if_unchanged``: remove the field


class Photos(Protocol):
    """The uploaded photos, by path in the bucket."""

    def put(self, path: str, data: bytes, content_type: str) -> bool:
        """Store the photo unless one is at ``path`` already (that one is kept: photos are never overwritten, so
        the uploader needs no right to delete); whether this call stored it."""
        ...

    def get(self, path: str) -> bytes:
        """The photo's bytes; raises PhotoNotFound if there is none."""
        ...

    def delete(self, path: str) -> None:
        """Delete the photo; nothing happens if it is gone already."""
        ...


class Quotas(Protocol):
    def take(self, uid: str, limit: int, now: dt.datetime, key: str | None = None) -> int:
        """Count one upload of ``uid`` in the clock hour of ``now``: 0 if allowed, else seconds until the reset.
        Uploads with the same ``key`` (the job an Idempotency-Key names) count once in an hour, so retrying a
        request that failed half-way spends no more quota."""
        ...


class Queue(Protocol):
    def enqueue(self, job_id: str, nonce: str) -> None:
        """Ask for one delivery of the job to infer, as the task named after the job and ``nonce`` (a new nonce
        for each run of the job: Cloud Tasks keeps a name reserved for about an hour after its task ran).
        Delivery is at least once: a job may arrive twice, even at the same time. Enqueueing a task whose name
        exists already is not an error."""
        ...


class Analysis(Protocol):
    """What the analysis of one photo produced: ``done`` with a result, or ``rejected`` with the reason."""

    @property
    def status(self) -> str: ...

    @property
    def result(self) -> dict[str, Any] | None: ...

    @property
    def rejection(self) -> dict[str, Any] | None: ...


class Analyze(Protocol):
    def __call__(self, data: bytes) -> Analysis: ...


class Deps(Protocol):
    """What the use cases are given: the settings and the four ports (``shared.bootstrap`` wires them)."""

    @property
    def config(self) -> Config: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def photos(self) -> Photos: ...

    @property
    def quotas(self) -> Quotas: ...

    @property
    def queue(self) -> Queue: ...
