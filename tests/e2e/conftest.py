"""One real local stack for the end-to-end tests: the Firebase Auth, Firestore, Storage and Cloud Tasks emulators,
the three functions as functions-framework processes and the web client, on free loopback ports, in a temporary
state folder. Users sign in on the Auth emulator; every answer of a function is checked against docs/openapi.yaml."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, storage, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from devstack import auth_emulator
from devstack.stack import FUNCTIONS, Stack, free_ports, service_env, settings
from tests.e2e.openapi import checking

TERMINAL = {"done", "rejected", "failed"}
ALLOWED_ORIGIN = "https://app.example"


class Api:
    """The stack as a client sees it (HTTP), plus direct access to the emulators for assertions."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.env = service_env(stack.s)
        self.project = self.env["GOOGLE_CLOUD_PROJECT"]
        self.queue = self.env["TASKS_QUEUE"]
        self.url = {name: f"http://127.0.0.1:{stack.s[name.upper() + '_PORT']}/" for name in FUNCTIONS}
        self.web_url = f"http://127.0.0.1:{stack.s['WEB_PORT']}/"
        self.auth_host = self.env["FIREBASE_AUTH_EMULATOR_HOST"]
        self._tokens: dict[str, str] = {}
        self.db = firestore.Client(project=self.project, credentials=AnonymousCredentials())
        self.bucket = storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.env["STORAGE_EMULATOR_HOST"]},
        ).bucket(self.env["STORAGE_BUCKET"])
        self.tasks = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(self.env["CLOUD_TASKS_EMULATOR_HOST"]))
        )

    def token(self, uid: str) -> str:
        """An ID token the Auth emulator issued to ``uid`` (the user is created on first use)."""
        if uid not in self._tokens:
            self._tokens[uid] = auth_emulator.id_token(self.auth_host, self.project, uid)
        return self._tokens[uid]

    def forget_tokens(self) -> None:
        self._tokens.clear()

    def auth(self, uid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(uid)}"}

    def upload(
        self,
        uid: str,
        data: bytes,
        *,
        content_type: str = "image/jpeg",
        key: str | None = None,
        multipart: bool = True,
        headers: dict | None = None,
    ) -> requests.Response:
        headers = {**self.auth(uid), **({"Idempotency-Key": key} if key else {}), **(headers or {})}
        if multipart:
            return requests.post(
                self.url["upload"], files={"image": ("photo", data, content_type)}, headers=headers, timeout=30
            )
        return requests.post(
            self.url["upload"], data=data, headers={**headers, "Content-Type": content_type}, timeout=30
        )

    def status(self, uid: str, job_id: str) -> requests.Response:
        return requests.get(self.url["status"] + job_id, headers=self.auth(uid), timeout=10)

    def wait(self, uid: str, job_id: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.status(uid, job_id).json()
            if job["status"] in TERMINAL:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")

    def deliver(self, job_id: str, retry_count: int = 0, queue: str | None = None) -> requests.Response:
        """A delivery as Cloud Tasks makes it (at least once: tests make duplicates on purpose)."""
        headers = {
            "X-CloudTasks-QueueName": queue or self.queue.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskRetryCount": str(retry_count),
        }
        return requests.post(self.url["infer"], json={"jobId": job_id}, headers=headers, timeout=60)

    def counts(self) -> tuple[int, int, int]:
        """Documents in `jobs`, objects in the bucket and tasks in the queue: what a refused request must not add."""
        return (
            len(list(self.db.collection("jobs").select([]).stream())),
            len(list(self.bucket.list_blobs())),
            len(list(self.tasks.list_tasks(parent=self.queue))),
        )

    def pause_queue(self) -> None:
        self.tasks.pause_queue(name=self.queue)

    def resume_queue(self) -> None:
        self.tasks.resume_queue(name=self.queue)

    def infer_log(self) -> str:
        return (self.stack.logs / "infer.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def api(tmp_path_factory):
    emulator = Path(settings()["FIRESTORE_EMULATOR"])
    if not emulator.exists():
        pytest.fail(
            f"{emulator} is missing: install gcloud's cloud-firestore-emulator component "
            "or set FIRESTORE_EMULATOR to its cloud_firestore_emulator script"
        )
    ports = free_ports()  # every part of the stack on a free port of its own
    environ = {
        **os.environ,
        **ports,
        "STACK_DIR": str(tmp_path_factory.mktemp("stack")),
        "LEASE_SECONDS": "4",
        "ALLOWED_ORIGINS": ALLOWED_ORIGIN,
    }
    stack = Stack(environ)
    saved = dict(os.environ)
    os.environ.update({key: value for key, value in service_env(stack.s).items() if key.endswith("_HOST")})
    try:
        stack.up()
        api = Api(stack)
        with checking(api.url):
            yield api
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)
