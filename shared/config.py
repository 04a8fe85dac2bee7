"""Every environment variable the service reads, with its default and meaning: the single source of configuration.

``Config`` is a frozen dataclass: one typed field per variable, named as the variable, with its default (as
written in the environment) and meaning. ``load(environ)`` builds it; ``python -m shared.config`` prints the
Markdown table that the README carries.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def setting(default: str, meaning: str) -> Any:
    """A field read from the environment variable of the field's name; ``default`` is written as in the environment."""
    return dataclasses.field(metadata={"default": default, "meaning": meaning})


def _bool(value: str) -> bool:
    """true/false, 1/0, yes/no, on/off; anything else is an error, so a typo cannot turn a check off."""
    word = value.strip().lower()
    if word not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ValueError("expected true or false")
    return word in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Config:
    GOOGLE_CLOUD_PROJECT: str = setting(
        "demo-skin", "Google Cloud / Firebase project id. A `demo-` project is emulator-only."
    )
    STORAGE_BUCKET: str = setting("demo-skin.appspot.com", "Cloud Storage bucket that holds the uploaded photos.")
    TASKS_QUEUE: str = setting(
        "projects/demo-skin/locations/us-central1/queues/infer",
        "Full name of the Cloud Tasks queue that delivers jobs to infer.",
    )
    INFER_URL: str = setting("http://127.0.0.1:8092/", "URL the Cloud Tasks HTTP task targets (the infer service).")
    TASKS_SERVICE_ACCOUNT: str = setting(
        "", "Service account whose OIDC token Cloud Tasks attaches to the task (empty: no token, local only)."
    )
    STATUS_URL: str = setting(
        "http://127.0.0.1:8093/", "Public base URL of the status function, used for `statusUrl` and `Location`."
    )
    FIRESTORE_EMULATOR_HOST: str = setting(
        "", "host:port of the Firestore emulator (set locally; empty in production)."
    )
    STORAGE_EMULATOR_HOST: str = setting(
        "", "URL of the Cloud Storage emulator, e.g. http://127.0.0.1:4443 (empty in production)."
    )
    CLOUD_TASKS_EMULATOR_HOST: str = setting("", "host:port of the Cloud Tasks emulator (empty in production).")
    FIREBASE_AUTH_EMULATOR_HOST: str = setting(
        "",
        "Set (host:port) to accept the Auth emulator's unsigned ID tokens; refused unless the project is a demo- "
        "project.",
    )
    MAX_UPLOAD_BYTES: int = setting(str(10 * 1024 * 1024), "Largest accepted upload body in bytes (413 above).")
    MIN_IMAGE_SIDE: int = setting("64", "Shortest accepted image side in pixels (422 image_too_small below).")
    MAX_IMAGE_PIXELS: int = setting(
        "40000000",
        "Largest accepted image area in pixels (422 image_too_large above; checked before decoding).",
    )
    UPLOADS_PER_USER_PER_HOUR: int = setting(
        "60",
        "Uploads per user per clock hour (UTC), counted in Firestore so it holds across instances (429 above).",
    )
    JOB_TTL_DAYS: int = setting("30", "Days until a job's `expireAt`; Firestore TTL deletes the document then.")
    MAX_ATTEMPTS: int = setting(
        "12",
        "Deliveries of one job before infer writes `failed`; match the queue's max attempts (12 outlast a "
        "30-minute outage: deploy/README.md).",
    )
    LEASE_SECONDS: int = setting("120", "How long a delivery holds a `processing` job before another may take it over.")
    STALE_AFTER_SECONDS: int = setting(
        "3600",
        "A job not finished this long after its last change is reported `failed`: the queue gave up on it, or a "
        "backlog held its task that long (keep it above the longest backlog you expect).",
    )
    BLUR_THRESHOLD: float = setting(
        "3.1",
        "Variance of the Laplacian (256x256 greyscale resize) under which a photo is rejected as too blurry; tuned "
        "on HAM10000 by `scripts/tune_quality.py`.",
    )
    DARK_THRESHOLD: float = setting("25", "Mean brightness (0-255) under which a photo is rejected as too dark.")
    BRIGHT_THRESHOLD: float = setting("235", "Mean brightness (0-255) over which a photo is rejected as overexposed.")
    GATE_THRESHOLD: float = setting(
        "0.5",
        "Probability (the reference model's gate) under which a photo is rejected as `not_a_lesion`; 0.5 is the "
        "operating point fitted by `make export` (model card).",
    )
    CONF_THRESHOLD: float = setting(
        "0.7",
        "Confidence the assessment must reach, with the binary model and the reference agreeing with it on benign "
        "vs malignant, for a conclusive result; fitted by `make export` (model card).",
    )
    MODEL_RUNTIME: str = setting(
        "onnx",
        "`onnx` (ONNX Runtime, the default and the container's) or `torch` for the three card models, rebuilt from "
        "their ONNX files or loaded from a manifest entry's `torch_file` (YOLO .pt / ResNet50 state dict); the "
        "reference runs on ONNX Runtime either way.",
    )
    MODELS_DIR: Path = setting(str(REPO_ROOT / "models"), "Folder that holds `manifest.json` and the weights it names.")
    MODEL_THREADS: int = setting(
        "0",
        "Threads of the one ONNX Runtime pool the four models share (torch: its thread count); 0 = the CPUs this "
        "process may use (cgroup quota aware).",
    )
    APP_CHECK_REQUIRED: bool = setting(
        "false",
        "`true`: upload and status also require a valid Firebase App Check token in `X-Firebase-AppCheck` (401 "
        "`app_not_verified` without). Off locally: there is no App Check emulator.",
    )
    ALLOWED_ORIGINS: tuple[str, ...] = setting(
        "", "Comma-separated browser origins allowed by CORS; empty allows none."
    )
    LOG_LEVEL: str = setting("INFO", "Lowest severity written to the JSON log.")

    @property
    def emulator_auth(self) -> bool:
        return bool(self.FIREBASE_AUTH_EMULATOR_HOST)


PARSERS: dict[object, typing.Callable[[str], object]] = {
    str: str,
    int: int,
    float: float,
    Path: Path,
    bool: _bool,
    tuple[str, ...]: _list,
}


TYPES = typing.get_type_hints(Config)


def fields() -> tuple[dataclasses.Field, ...]:
    """The settings, in the order of the README table."""
    return dataclasses.fields(Config)


def _parser(field: dataclasses.Field) -> typing.Callable[[str], object]:
    return PARSERS[TYPES[field.name]]


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration from ``environ`` (default ``os.environ``); a bad value raises ValueError naming it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in fields():
        raw = environ.get(field.name, field.metadata["default"])
        try:
            values[field.name] = _parser(field)(raw)
        except ValueError as exc:
            raise ValueError(f"{field.name}={raw!r} is not valid: {exc}") from None
    return Config(**values)


def defaults() -> dict[str, str]:
    """Each variable's default, as written in the environment."""
    return {field.name: field.metadata["default"] for field in fields()}


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for field in fields():
        raw = field.metadata["default"]
        default = raw.replace(str(REPO_ROOT), "<repo>") if raw else "(empty)"
        lines.append(f"| `{field.name}` | `{default}` | {field.metadata['meaning']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
