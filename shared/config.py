"""Every environment variable the service reads, with its default and meaning: the single source of configuration.

``python -m shared.config`` prints the Markdown table that the README carries.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str
    parse: Callable[[str], object] = str


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "GOOGLE_CLOUD_PROJECT", "demo-skin", "Google Cloud / Firebase project id. A `demo-` project is emulator-only."
    ),
    Setting("STORAGE_BUCKET", "demo-skin.appspot.com", "Cloud Storage bucket that holds the uploaded photos."),
    Setting(
        "TASKS_QUEUE",
        "projects/demo-skin/locations/us-central1/queues/infer",
        "Full name of the Cloud Tasks queue that delivers jobs to infer.",
    ),
    Setting("INFER_URL", "http://127.0.0.1:8092/", "URL the Cloud Tasks HTTP task targets (the infer service)."),
    Setting(
        "TASKS_SERVICE_ACCOUNT",
        "",
        "Service account whose OIDC token Cloud Tasks attaches to the task (empty: no token, local only).",
    ),
    Setting(
        "STATUS_URL",
        "http://127.0.0.1:8093/",
        "Public base URL of the status function, used for `statusUrl` and `Location`.",
    ),
    Setting("FIRESTORE_EMULATOR_HOST", "", "host:port of the Firestore emulator (set locally; empty in production)."),
    Setting(
        "STORAGE_EMULATOR_HOST",
        "",
        "URL of the Cloud Storage emulator, e.g. http://127.0.0.1:4443 (empty in production).",
    ),
    Setting("CLOUD_TASKS_EMULATOR_HOST", "", "host:port of the Cloud Tasks emulator (empty in production)."),
    Setting(
        "FIREBASE_AUTH_EMULATOR_HOST",
        "",
        "Set (host:port) to accept the Auth emulator's unsigned ID tokens; refused unless the project is a demo- project.",
    ),
    Setting("MAX_UPLOAD_BYTES", str(10 * 1024 * 1024), "Largest accepted upload body in bytes (413 above).", int),
    Setting("MIN_IMAGE_SIDE", "64", "Shortest accepted image side in pixels (422 image_too_small below).", int),
    Setting(
        "MAX_IMAGE_PIXELS",
        "40000000",
        "Largest accepted image area in pixels (422 image_too_large above; checked before decoding).",
        int,
    ),
    Setting(
        "UPLOADS_PER_USER_PER_HOUR",
        "60",
        "Uploads per user per clock hour (UTC), counted in Firestore so it holds across instances (429 above).",
        int,
    ),
    Setting("JOB_TTL_DAYS", "30", "Days until a job's `expireAt`; Firestore TTL deletes the document then.", int),
    Setting(
        "MAX_ATTEMPTS", "5", "Deliveries of one job before infer writes `failed`; match the queue's max attempts.", int
    ),
    Setting(
        "LEASE_SECONDS", "120", "How long a delivery holds a `processing` job before another may take it over.", int
    ),
    Setting(
        "STALE_AFTER_SECONDS",
        "3600",
        "A job not finished this long after its last change is reported `failed` (the queue gave up).",
        int,
    ),
    Setting(
        "BLUR_THRESHOLD",
        "3.1",
        "Variance of the Laplacian (256x256 greyscale resize) under which a photo is rejected as too blurry; tuned on HAM10000 by `scripts/tune_quality.py`.",
        float,
    ),
    Setting("DARK_THRESHOLD", "25", "Mean brightness (0-255) under which a photo is rejected as too dark.", float),
    Setting("BRIGHT_THRESHOLD", "235", "Mean brightness (0-255) over which a photo is rejected as overexposed.", float),
    Setting(
        "CONF_THRESHOLD",
        "0.7",
        "Confidence both the binary model and the check must reach for a conclusive result.",
        float,
    ),
    Setting(
        "MODEL_RUNTIME",
        "onnx",
        "`onnx` (ONNX Runtime, the default and the container's) or `torch` (YOLO .pt / ResNet50 state dict).",
    ),
    Setting("MODELS_DIR", str(REPO_ROOT / "models"), "Folder that holds `manifest.json` and the weights it names."),
    Setting(
        "MODEL_THREADS",
        "0",
        "Threads of the one ONNX Runtime pool the three models share (torch: its thread count); 0 = the CPUs this process may use (cgroup quota aware).",
        int,
    ),
    Setting("ALLOWED_ORIGINS", "", "Comma-separated browser origins allowed by CORS; empty allows none.", _list),
    Setting("LOG_LEVEL", "INFO", "Lowest severity written to the JSON log."),
)


@dataclass(frozen=True)
class Config:
    values: Mapping[str, object]

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def emulator_auth(self) -> bool:
        return bool(self.values["FIREBASE_AUTH_EMULATOR_HOST"])


def load(environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{setting.name}={raw!r} is not valid: {exc}") from None
    return Config(values)


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default.replace(str(REPO_ROOT), "<repo>") if setting.default else "(empty)"
        lines.append(f"| `{setting.name}` | `{default}` | {setting.meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
