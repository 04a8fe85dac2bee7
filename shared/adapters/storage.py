"""Uploaded photos in Cloud Storage (fake-gcs-server locally)."""

from __future__ import annotations

import google.cloud.storage as storage
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from shared.errors import Unavailable
from shared.ports import PhotoNotFound

TIMEOUT = 10.0
TRANSIENT = (gexc.GoogleAPICallError, gexc.RetryError, requests.exceptions.RequestException)


def make_client(project: str, emulator_host: str) -> storage.Client:
    if emulator_host:
        return storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator_host}
        )
    return storage.Client(project=project)


class PhotoStore:
    def __init__(self, client: storage.Client, bucket: str):
        self.bucket = client.bucket(bucket)

    def put(self, path: str, data: bytes, content_type: str) -> bool:
        """Create the object only if there is none (``ifGenerationMatch=0``): a stored photo is never replaced."""
        try:
            self.bucket.blob(path).upload_from_string(
                data, content_type=content_type, if_generation_match=0, timeout=TIMEOUT, retry=None
            )
            return True
        except gexc.PreconditionFailed:
            return False
        except TRANSIENT as exc:
            raise Unavailable("Cloud Storage") from exc

    def get(self, path: str) -> bytes:
        try:
            return self.bucket.blob(path).download_as_bytes(timeout=TIMEOUT, retry=None)
        except gexc.NotFound as exc:
            raise PhotoNotFound(path) from exc
        except TRANSIENT as exc:
            raise Unavailable("Cloud Storage") from exc

    def delete(self, path: str) -> None:
        try:
            self.bucket.blob(path).delete(timeout=TIMEOUT, retry=None)
        except gexc.NotFound:
            pass
        except TRANSIENT as exc:
            raise Unavailable("Cloud Storage") from exc
