"""Cloud Tasks HTTP tasks that deliver ``{"jobId": ...}`` to the infer service."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from shared.errors import Unavailable

TIMEOUT = 10.0


def make_client(emulator_host: str) -> tasks_v2.CloudTasksClient:
    if emulator_host:
        channel = grpc.insecure_channel(emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


class TaskQueue:
    def __init__(self, client: tasks_v2.CloudTasksClient, queue: str, target_url: str, service_account: str):
        self.client = client
        self.queue = queue
        self.target_url = target_url
        self.service_account = service_account

    def enqueue(self, job_id: str, nonce: str) -> None:
        """Create the task named ``{jobId}-{nonce}``: the real service refuses a second task of a name (so a
        retried upload makes no second task) and keeps the name reserved for about an hour after the task ran
        (so each run of a job, after a DELETE or a restart, has a new nonce)."""
        request: dict[str, Any] = {
            "url": self.target_url,
            "http_method": tasks_v2.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"jobId": job_id}).encode(),
        }
        if self.service_account:
            request["oidc_token"] = {"service_account_email": self.service_account, "audience": self.target_url}
        task: Any = {
            "name": f"{self.queue}/tasks/{job_id}-{nonce}",
            "http_request": request,
        }  # the mapping form of a Task, as proto-plus accepts
        try:
            self.client.create_task(parent=self.queue, task=task, timeout=TIMEOUT, retry=None)
        except gexc.AlreadyExists:
            pass  # delivered or on its way already
        except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
            raise Unavailable("The task queue") from exc
