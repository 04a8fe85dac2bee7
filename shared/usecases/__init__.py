"""The use cases behind the three functions, one module per function (so each imports only what it needs).
They know the job state machine and the ports of ``shared.ports``, nothing of HTTP or of a concrete adapter:
each returns an ``Outcome`` or raises ``ServiceError``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ServiceError


@dataclass
class Outcome:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)  # fields for the request's log line


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def not_found() -> ServiceError:
    return ServiceError(404, "not_found", "No such job for this account; check the jobId.")
