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
from shared.errors import ServiceError
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


def test_a_guard_answers_every_method_before_anything_else_and_is_logged():
    deps = fake_deps()
    deps.log = JsonLog("INFO", io.StringIO())
    handled = []

    def refuse():
        raise ServiceError(403, "forbidden", "Only the queue may call this.")

    for method in ("POST", "GET", "OPTIONS"):
        request = Request(EnvironBuilder(method=method, headers={"Origin": "http://127.0.0.1:1"}).get_environ())
        body, status, headers = http.respond(
            request, deps, "infer", lambda: handled.append(1), "POST", guard=refuse, browsers=False
        )
        assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
        assert not any(name.startswith("Access-Control-") for name in headers)
    assert handled == []
    lines = [json.loads(text) for text in deps.log.stream.getvalue().splitlines()]
    assert [line["error"] for line in lines] == ["forbidden"] * 3


def test_without_browsers_options_is_a_method_not_served():
    deps = fake_deps()
    request = Request(EnvironBuilder(method="OPTIONS").get_environ())
    _, status, headers = http.respond(request, deps, "infer", lambda: None, "POST", browsers=False)
    assert status == 405 and headers["Allow"] == "POST"
