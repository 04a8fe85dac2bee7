"""The one place that wires configuration to adapters. Each adapter is built on first use and kept per process;
``bootstrap(config, jobs=..., ...)`` puts fakes (or anything else that fits the port) in their place."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import config as config_module
from shared.config import Config
from shared.logs import JsonLog
from shared.ports import Jobs, Photos, Queue, Quotas

if TYPE_CHECKING:
    from shared.analysis.pipeline import Pipeline
    from shared.auth import TokenVerifier

REPLACEABLE = ("jobs", "photos", "quotas", "queue", "tokens", "pipeline")


@dataclass
class Dependencies:
    config: Config
    log: JsonLog

    @functools.cached_property
    def _firestore(self) -> Any:
        from shared.adapters import firestore

        return firestore.make_client(self.config.GOOGLE_CLOUD_PROJECT, self.config.FIRESTORE_EMULATOR_HOST)

    @functools.cached_property
    def jobs(self) -> Jobs:
        from shared.adapters.firestore import JobStore

        return JobStore(self._firestore)

    @functools.cached_property
    def quotas(self) -> Quotas:
        from shared.adapters.firestore import QuotaStore

        return QuotaStore(self._firestore)

    @functools.cached_property
    def photos(self) -> Photos:
        from shared.adapters import storage

        client = storage.make_client(self.config.GOOGLE_CLOUD_PROJECT, self.config.STORAGE_EMULATOR_HOST)
        return storage.PhotoStore(client, self.config.STORAGE_BUCKET)

    @functools.cached_property
    def queue(self) -> Queue:
        from shared.adapters import tasks

        client = tasks.make_client(self.config.CLOUD_TASKS_EMULATOR_HOST)
        return tasks.TaskQueue(
            client, self.config.TASKS_QUEUE, self.config.INFER_URL, self.config.TASKS_SERVICE_ACCOUNT
        )

    @functools.cached_property
    def tokens(self) -> TokenVerifier:
        from shared.auth import TokenVerifier

        return TokenVerifier(
            self.config.GOOGLE_CLOUD_PROJECT, self.config.emulator_auth, self.config.APP_CHECK_REQUIRED
        )

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        from shared.analysis.pipeline import Pipeline

        return Pipeline(self.config)


def bootstrap(config: Config | None = None, log: JsonLog | None = None, **replacements: Any) -> Dependencies:
    """The dependencies for ``config`` (default: the environment's), with any of ``REPLACEABLE`` given."""
    config = config_module.load() if config is None else config
    deps = Dependencies(config, log or JsonLog(config.LOG_LEVEL))
    for name, value in replacements.items():
        if name not in REPLACEABLE:
            raise TypeError(f"bootstrap() cannot replace {name!r}; choose from {', '.join(REPLACEABLE)}")
        setattr(deps, name, value)  # stands in for the cached_property, which is then never built
    return deps


@functools.cache
def dependencies() -> Dependencies:
    """This process's dependencies, wired from the environment."""
    return bootstrap()
