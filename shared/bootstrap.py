"""The one place that wires configuration to adapters. Everything is built on first use and kept per process."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from shared import config as config_module
from shared.config import Config
from shared.logs import JsonLog


@dataclass
class Dependencies:
    config: Config
    log: JsonLog

    @functools.cached_property
    def _firestore(self):
        from shared.adapters import firestore

        return firestore.make_client(self.config.GOOGLE_CLOUD_PROJECT, self.config.FIRESTORE_EMULATOR_HOST)

    @functools.cached_property
    def jobs(self):
        from shared.adapters.firestore import JobStore

        return JobStore(self._firestore)

    @functools.cached_property
    def quotas(self):
        from shared.adapters.firestore import QuotaStore

        return QuotaStore(self._firestore)

    @functools.cached_property
    def photos(self):
        from shared.adapters import storage

        client = storage.make_client(self.config.GOOGLE_CLOUD_PROJECT, self.config.STORAGE_EMULATOR_HOST)
        return storage.PhotoStore(client, self.config.STORAGE_BUCKET)

    @functools.cached_property
    def queue(self):
        from shared.adapters import tasks

        client = tasks.make_client(self.config.CLOUD_TASKS_EMULATOR_HOST)
        return tasks.TaskQueue(
            client, self.config.TASKS_QUEUE, self.config.INFER_URL, self.config.TASKS_SERVICE_ACCOUNT
        )

    @functools.cached_property
    def tokens(self):
        from shared.auth import TokenVerifier

        return TokenVerifier(self.config.GOOGLE_CLOUD_PROJECT, self.config.emulator_auth)

    @functools.cached_property
    def pipeline(self):
        from shared.analysis.pipeline import Pipeline

        return Pipeline(self.config)


@functools.cache
def dependencies() -> Dependencies:
    config = config_module.load()
    return Dependencies(config, JsonLog(config.LOG_LEVEL))
