"""Errors a client can act on, each mapped to an HTTP status and the JSON error shape of API.md."""

from __future__ import annotations

import traceback


def described(exc: BaseException) -> dict[str, str]:
    """The log fields that say why a request failed: the exception in one line, and its stack trace (Cloud Error
    Reporting groups log lines by ``stack_trace``)."""
    return {"cause": f"{type(exc).__name__}: {exc}", "stack_trace": "".join(traceback.format_exception(exc))}


def exactly(value: int, unit: int, unit_name: str, base_name: str) -> str:
    """A limit for a message, never rounded: in ``unit_name`` when it is a whole number of them ("10 MiB"), else
    in ``base_name`` ("500,000 bytes")."""
    return f"{value // unit:,} {unit_name}" if value % unit == 0 else f"{value:,} {base_name}"


class ServiceError(Exception):
    """An expected failure with a stable snake_case code and a sentence a person can act on."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.log: dict = {}  # fields for the request's log line (the job it concerns, say), never sent to the client

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class Unavailable(ServiceError):
    """A dependency (Storage, Firestore, the queue) failed; the same request may be retried."""

    def __init__(self, what: str, retry_after: int = 5):
        super().__init__(
            503,
            "unavailable",
            f"{what} is unavailable right now; retry in a few seconds (with the same Idempotency-Key it is safe).",
            {"Retry-After": str(retry_after)},
        )


def invalid_request(message: str) -> ServiceError:
    return ServiceError(400, "invalid_request", message)
