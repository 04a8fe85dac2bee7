"""The one JSON log line each request writes: an error's line says which job and why, so a broken model deploy can
be diagnosed from the logs (Error Reporting groups lines by their ``stack_trace``)."""

from __future__ import annotations

import datetime as dt
import io
import json

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shared import http
from shared.domain import jobs
from shared.logs import JsonLog
from shared.usecases import infer
from tests.fakes import fake_deps

JOB_ID = "abcdefgh12"


def broken_model(_: bytes):
    raise RuntimeError("ONNXRuntimeError: input shape mismatch")


def deliveries(*retry_counts: int) -> list[tuple[int, dict]]:
    deps = fake_deps()
    deps.log = JsonLog("INFO", io.StringIO())
    now = dt.datetime.now(dt.UTC)
    image = {"path": f"uploads/u1/{JOB_ID}.jpg", "contentType": "image/jpeg", "sizeBytes": 3, "width": 64,
             "height": 64, "sha256": "x"}  # fmt: skip
    deps.jobs.create(JOB_ID, jobs.new_job("u1", image, now, 30), jobs.new_worker(now, 30))
    deps.photos.put(image["path"], b"abc", "image/jpeg")
    statuses = []
    for retry in retry_counts:
        request = Request(EnvironBuilder(method="POST", json={"jobId": JOB_ID}).get_environ())
        _, status, _ = http.respond(
            request, deps, "infer", lambda r=retry: infer.deliver(deps, broken_model, JOB_ID, r), "POST"
        )
        statuses.append(status)
    lines = [json.loads(line) for line in deps.log.stream.getvalue().splitlines()]
    assert len(lines) == len(retry_counts), "one line per request"
    return list(zip(statuses, lines, strict=True))


def test_a_failed_analysis_logs_the_job_and_the_cause_on_every_attempt():
    (retried, line), (ended, last) = deliveries(0, 11)
    assert retried == 503 and line["severity"] == "ERROR" and line["error"] == "unavailable"
    assert line["jobId"] == JOB_ID and line["retryCount"] == 0
    assert line["cause"] == "RuntimeError: ONNXRuntimeError: input shape mismatch"
    assert "broken_model" in line["stack_trace"]
    assert ended == 200 and last["status"] == "failed", "the last attempt ends the job"
    assert last["severity"] == "ERROR" and last["cause"].startswith("RuntimeError") and "stack_trace" in last


def test_an_unexpected_error_is_one_line_with_its_stack_trace():
    deps = fake_deps()
    deps.log = JsonLog("INFO", io.StringIO())

    def bug():
        raise KeyError("status")

    _, status, _ = http.respond(Request(EnvironBuilder(method="GET").get_environ()), deps, "status", bug, "GET")
    (line,) = [json.loads(text) for text in deps.log.stream.getvalue().splitlines()]
    assert status == 500 and line["severity"] == "ERROR" and line["error"] == "internal"
    assert line["cause"] == "KeyError: 'status'" and "in bug" in line["stack_trace"]
