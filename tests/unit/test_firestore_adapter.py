"""The Firestore adapter's error mapping, on the real client library with no server: what must become a 503
(``Unavailable``, retried by the caller) and what means "someone else wrote first"."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc

from shared.adapters.firestore import JobStore, make_client
from shared.errors import Unavailable

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens, so every call fails at once


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", NOWHERE)
    return make_client("demo-adapter", NOWHERE)


def failing_commits(client, error: Exception) -> None:
    real_batch = client.batch

    def batch():
        inner = real_batch()
        inner.commit = lambda **_: (_ for _ in ()).throw(error)
        return inner

    client.batch = batch


def test_contention_is_retried_as_transient_not_taken_for_a_lost_race(client):
    # google-api-core makes Aborted a subclass of Conflict: caught as Conflict, a finished analysis would read as
    # "another delivery wrote first" and be dropped, and a new job as "this key exists already"
    failing_commits(client, gexc.Aborted("Too much contention on these documents. Please try again."))
    store, now = JobStore(client), dt.datetime.now(dt.UTC)
    with pytest.raises(Unavailable):
        store.update_if_unchanged("job1", {"status": "done"}, (now, now), {"leaseOwner": None})
    with pytest.raises(Unavailable):
        store.create("job1", {"status": "queued"})


@pytest.mark.parametrize("error", [gexc.FailedPrecondition("stale"), gexc.NotFound("gone")])
def test_a_write_that_lost_its_precondition_returns_none(client, error):
    failing_commits(client, error)
    now = dt.datetime.now(dt.UTC)
    assert JobStore(client).update_if_unchanged("job1", {"status": "done"}, (now, now)) is None


def test_an_existing_job_is_reported_as_such(client):
    failing_commits(client, gexc.AlreadyExists("exists"))
    assert JobStore(client).create("job1", {"status": "queued"}) is False


def test_the_sweeps_query_answers_unavailable_when_firestore_is_down(client):
    # with retry=None the library's stream asks None whether to resume and raises AttributeError (a 500)
    with pytest.raises(Unavailable):
        JobStore(client).with_status(["queued", "processing"])
