"""deploy/deploy.sh --dry-run: the commands it would run, checked flag by flag, with no gcloud on the PATH."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INVOKER = "skin-tasks-invoker@my-proj.iam.gserviceaccount.com"


def config_defaults() -> dict[str, str]:
    lines = (REPO / "deploy/config.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"[A-Z_]+=", line))


CONFIG = config_defaults()


def dry_run(tmp_path: Path, **env: str) -> list[list[str]]:
    """The printed commands, each split into words (``VAR=$(cmd)`` lines as cmd)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tools = {tool: os.path.realpath(shutil.which(tool)) for tool in ("bash", "date", "dirname", "mkdir")}
    tools["python3"] = os.path.realpath(sys.executable)  # the script uses only the standard library
    for tool, path in tools.items():
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(path)
    assert shutil.which("gcloud", path=str(bin_dir)) is None
    done = subprocess.run(
        [str(bin_dir / "bash"), "deploy/deploy.sh", "--dry-run", "--project", "my-proj", "--region", "europe-west1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "WORK_DIR": str(tmp_path / "work"), **env},
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(re.sub(r"^[A-Z_]+=\$\((.*)\)$", r"\1", line)) for line in done.stdout.splitlines()]


def find(commands: list[list[str]], *words: str) -> list[list[str]]:
    return [cmd for cmd in commands if cmd[: len(words)] == list(words)]


def one(commands: list[list[str]], *words: str) -> list[str]:
    found = find(commands, *words)
    assert len(found) == 1, f"{' '.join(words)}: {len(found)} commands"
    return found[0]


def env_vars(cmd: list[str]) -> dict[str, str]:
    (value,) = [arg.removeprefix("--set-env-vars=^;^") for arg in cmd if arg.startswith("--set-env-vars=")]
    return dict(pair.split("=", 1) for pair in value.split(";"))


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> list[list[str]]:
    return dry_run(tmp_path_factory.mktemp("dry-run"))


def test_every_line_is_a_gcloud_curl_or_staging_command(commands):
    assert commands and all(cmd[0] in {"gcloud", "curl", "python3"} for cmd in commands)
    assert all("--project=my-proj" in cmd for cmd in find(commands, "gcloud") if cmd[1] != "auth")


def test_infer_is_private_with_one_request_per_instance(commands):
    infer = one(commands, "gcloud", "run", "deploy", "infer")
    assert "--no-allow-unauthenticated" in infer and "--allow-unauthenticated" not in infer
    for flag in ("concurrency", "cpu", "memory", "min-instances", "max-instances"):
        assert f"--{flag}={CONFIG['INFER_' + flag.upper().replace('-', '_')]}" in infer
    assert "--service-account=skin-infer@my-proj.iam.gserviceaccount.com" in infer
    assert any(arg.startswith("--image=europe-west1-docker.pkg.dev/my-proj/") for arg in infer)
    assert env_vars(infer)["TASKS_QUEUE"] == "projects/my-proj/locations/europe-west1/queues/infer"


def test_queue_retries_and_rate_limits(commands):
    queue = one(commands, "gcloud", "tasks", "queues", "create", "infer")
    concurrent = int(CONFIG["INFER_MAX_INSTANCES"]) * int(CONFIG["INFER_CONCURRENCY"])
    for flag in (
        f"--max-attempts={CONFIG['MAX_ATTEMPTS']}",
        "--min-backoff=10s",
        "--max-backoff=300s",
        f"--max-retry-duration={CONFIG['QUEUE_MAX_RETRY_DURATION']}",
        f"--max-doublings={CONFIG['QUEUE_MAX_DOUBLINGS']}",
        f"--max-concurrent-dispatches={concurrent}",
        f"--max-dispatches-per-second={CONFIG['QUEUE_MAX_DISPATCHES_PER_SECOND']}",
    ):
        assert flag in queue


def seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def attempt_times(flags: dict[str, str]) -> list[float]:
    """When each attempt of a task that keeps failing starts, after the first (Cloud Tasks' documented backoff: the
    interval starts at min-backoff, doubles max-doublings times, then grows linearly by its last doubling, capped
    at max-backoff)."""
    low, high, doublings = seconds(flags["min-backoff"]), seconds(flags["max-backoff"]), int(flags["max-doublings"])
    times, interval = [0.0], low
    for retry in range(int(flags["max-attempts"]) - 1):
        times.append(times[-1] + min(interval, high))
        interval = interval * 2 if retry < doublings else interval + low * 2**doublings
    return times


def test_queue_outlasts_a_thirty_minute_outage(commands):
    queue = one(commands, "gcloud", "tasks", "queues", "create", "infer")
    flags = dict(arg[2:].split("=", 1) for arg in queue if arg.startswith("--") and "=" in arg)
    times = attempt_times(flags)
    assert times[:7] == [0, 10, 30, 70, 150, 310, 610]  # the schedule deploy/README.md spells out
    assert times[-1] >= 30 * 60 + 300, f"the last attempt comes {times[-1]:.0f} s after the first"
    retry_duration = seconds(flags["max-retry-duration"])
    assert retry_duration == 0 or retry_duration >= times[-1]  # the attempts decide, not the clock
    assert int(CONFIG["STALE_AFTER_SECONDS"]) > times[-1] + int(CONFIG["LEASE_SECONDS"])  # status waits for them all


def test_functions_are_gen2_python312_and_public(commands):
    for name in ("upload", "status"):
        deploy = one(commands, "gcloud", "functions", "deploy", name)
        for flag in (
            "--gen2",
            "--runtime=python312",
            "--trigger-http",
            f"--entry-point={name}",
            "--allow-unauthenticated",
            f"--service-account=skin-{name}@my-proj.iam.gserviceaccount.com",
        ):
            assert flag in deploy
        assert f"--source={CONFIG['STAGE_DIR']}/{name}" in deploy


def test_sweep_is_private_and_scheduled_with_its_own_oidc_identity(commands):
    sweep = one(commands, "gcloud", "functions", "deploy", "sweep")
    assert "--no-allow-unauthenticated" in sweep and "--allow-unauthenticated" not in sweep
    assert "--service-account=skin-sweep@my-proj.iam.gserviceaccount.com" in sweep and "--entry-point=sweep" in sweep
    assert env_vars(sweep)["STALE_AFTER_SECONDS"] == CONFIG["STALE_AFTER_SECONDS"]
    scheduler = "skin-scheduler@my-proj.iam.gserviceaccount.com"
    invoker = one(commands, "gcloud", "run", "services", "add-iam-policy-binding", "sweep")
    assert f"--member=serviceAccount:{scheduler}" in invoker and "--role=roles/run.invoker" in invoker
    job = one(commands, "gcloud", "scheduler", "jobs", "create", "http", "skin-sweep")
    for flag in (
        "--schedule=*/10 * * * *",
        "--http-method=POST",
        f"--oidc-service-account-email={scheduler}",
        "--oidc-token-audience=https://sweep-PLACEHOLDER.a.run.app",
        "--uri=https://sweep-PLACEHOLDER.a.run.app/",
    ):
        assert flag in job
    project_roles = {
        cmd[4].split("=", 1)[1]: cmd[5]
        for cmd in find(commands, "gcloud", "projects", "add-iam-policy-binding")
        if "skin-sweep@" in cmd[4] or "skin-scheduler@" in cmd[4]
    }
    assert project_roles == {"serviceAccount:skin-sweep@my-proj.iam.gserviceaccount.com": "--role=roles/datastore.user"}
    ttl = one(commands, "gcloud", "firestore", "fields", "ttls", "update", "expireAt", "--collection-group=private")
    assert "--enable-ttl" in ttl  # the worker state expires with its job


def test_upload_targets_infer_with_the_invoker_token(commands):
    env = env_vars(one(commands, "gcloud", "functions", "deploy", "upload"))
    assert env["TASKS_SERVICE_ACCOUNT"] == INVOKER
    assert env["INFER_URL"].startswith("https://infer-")
    assert env["STATUS_URL"].startswith("https://status-")
    assert env["MAX_ATTEMPTS"] == CONFIG["MAX_ATTEMPTS"]


def test_least_privilege_bindings(commands):
    invoker = one(commands, "gcloud", "run", "services", "add-iam-policy-binding", "infer")
    assert f"--member=serviceAccount:{INVOKER}" in invoker and "--role=roles/run.invoker" in invoker
    act_as = one(commands, "gcloud", "iam", "service-accounts", "add-iam-policy-binding", INVOKER)
    assert "--role=roles/iam.serviceAccountUser" in act_as
    enqueue = one(commands, "gcloud", "tasks", "queues", "add-iam-policy-binding", "infer")
    assert "--role=roles/cloudtasks.enqueuer" in enqueue
    project_roles = {
        (cmd[4].split("@")[0], cmd[5]) for cmd in find(commands, "gcloud", "projects", "add-iam-policy-binding")
    }
    assert project_roles == {
        *(
            (f"--member=serviceAccount:skin-{sa}", "--role=roles/datastore.user")
            for sa in ("upload", "status", "infer", "sweep")
        ),
        # check_revoked=True looks the user up in Firebase Auth: upload and status may read users, nothing more
        ("--member=serviceAccount:skin-upload", "--role=roles/firebaseauth.viewer"),
        ("--member=serviceAccount:skin-status", "--role=roles/firebaseauth.viewer"),
    }
    enabled = one(commands, "gcloud", "services", "enable")
    assert "identitytoolkit.googleapis.com" in enabled
    bucket = {
        (cmd[5].split("@")[0], cmd[6])
        for cmd in find(commands, "gcloud", "storage", "buckets", "add-iam-policy-binding")
    }
    assert bucket == {
        ("--member=serviceAccount:skin-upload", "--role=projects/my-proj/roles/skinPhotoCreator"),
        ("--member=serviceAccount:skin-status", "--role=projects/my-proj/roles/skinPhotoEraser"),
        ("--member=serviceAccount:skin-infer", "--role=projects/my-proj/roles/skinPhotoReader"),
    }
    permissions = {
        cmd[4]: set(next(arg for arg in cmd if arg.startswith("--permissions=")).split("=", 1)[1].split(","))
        for cmd in find(commands, "gcloud", "iam", "roles", "create")
    }
    assert permissions == {
        "skinPhotoCreator": {"storage.objects.create", "storage.objects.delete"},
        "skinPhotoReader": {"storage.objects.get"},
        "skinPhotoEraser": {"storage.objects.get", "storage.objects.delete"},
    }


def test_ttl_lifecycle_and_private_bucket(commands, tmp_path_factory):
    for group in ("jobs", "quotas"):
        ttl = one(
            commands, "gcloud", "firestore", "fields", "ttls", "update", "expireAt", f"--collection-group={group}"
        )
        assert "--enable-ttl" in ttl
    update = one(commands, "gcloud", "storage", "buckets", "update", "gs://my-proj-skin-photos")
    create = one(commands, "gcloud", "storage", "buckets", "create", "gs://my-proj-skin-photos")
    for command in (create, update):  # DELETE erases: no soft-deleted copy kept for 7 days
        assert "--uniform-bucket-level-access" in command and "--public-access-prevention" in command
        assert "--soft-delete-duration=0" in command
    (lifecycle,) = [arg.split("=", 1)[1] for arg in update if arg.startswith("--lifecycle-file=")]
    (rule,) = json.loads(Path(lifecycle).read_text())["lifecycle"]["rule"]
    assert rule == {
        "action": {"type": "Delete"},
        "condition": {"age": int(CONFIG["JOB_TTL_DAYS"]), "matchesPrefix": ["uploads/"]},
    }


def test_project_viewers_lose_the_new_buckets_access_to_the_photos(commands):
    one(commands, "gcloud", "storage", "buckets", "get-iam-policy", "gs://my-proj-skin-photos")
    removed = find(commands, "gcloud", "storage", "buckets", "remove-iam-policy-binding", "gs://my-proj-skin-photos")
    assert sorted(arg for cmd in removed for arg in cmd if arg.startswith("--role=")) == [
        "--role=roles/storage.legacyBucketReader",
        "--role=roles/storage.legacyObjectReader",
    ]
    assert all("--member=projectViewer:my-proj" in cmd and "--all" in cmd for cmd in removed)


def viewer_roles(policy: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "deploy/viewer_roles.py", policy, "my-proj"], cwd=REPO, capture_output=True, text=True
    )


def test_a_second_deploy_removes_nothing_once_the_viewers_bindings_are_gone():
    owners = {"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:my-proj", "projectEditor:my-proj"]}
    other = {"role": "roles/storage.legacyObjectReader", "members": ["projectViewer:another-proj"]}
    done = viewer_roles(json.dumps({"bindings": [owners, other], "etag": "CAE="}))
    assert done.returncode == 0 and done.stdout.split() == []
    only_list = {"role": "roles/storage.legacyBucketReader", "members": ["user:a@b.c", "projectViewer:my-proj"]}
    done = viewer_roles(json.dumps({"bindings": [owners, only_list]}))
    assert done.returncode == 0 and done.stdout.split() == ["roles/storage.legacyBucketReader"]


def test_a_policy_that_does_not_parse_stops_the_deploy():
    assert viewer_roles("<html>503</html>").returncode != 0


def test_rules_are_released(commands):
    def bodies(url: str) -> list[dict]:
        return [
            json.loads(Path(cmd[-1].removeprefix("@")).read_text())
            for cmd in find(commands, "curl", "-sS", "--fail-with-body", "-X", "POST", url)
        ]

    api = "https://firebaserules.googleapis.com/v1/projects/my-proj"
    rulesets = [body["source"]["files"][0] for body in bodies(f"{api}/rulesets")]
    assert [(file["name"], file["content"]) for file in rulesets] == [
        (name, (REPO / "deploy" / name).read_text()) for name in ("firestore.rules", "storage.rules")
    ]
    assert [body["name"] for body in bodies(f"{api}/releases")] == [
        "projects/my-proj/releases/cloud.firestore",
        "projects/my-proj/releases/firebase.storage/my-proj-skin-photos",
    ]
    assert not any("DRY-RUN-TOKEN" in arg for cmd in commands for arg in cmd)


def test_environment_overrides_the_config_file(tmp_path):
    commands = dry_run(tmp_path, MAX_ATTEMPTS="7", INFER_MAX_INSTANCES="3")
    queue = one(commands, "gcloud", "tasks", "queues", "create", "infer")
    assert "--max-attempts=7" in queue and "--max-concurrent-dispatches=3" in queue
    assert env_vars(one(commands, "gcloud", "run", "deploy", "infer"))["MAX_ATTEMPTS"] == "7"


def test_the_analysis_settings_reach_the_functions_that_read_them_when_set(tmp_path, commands):
    commands_set = dry_run(tmp_path, GATE_THRESHOLD="0.6", MIN_IMAGE_SIDE="128", MODEL_THREADS="2")
    infer, upload = (env_vars(one(commands_set, *words)) for words in (RUN_INFER, DEPLOY_UPLOAD))
    assert (infer["GATE_THRESHOLD"], infer["MIN_IMAGE_SIDE"], infer["MODEL_THREADS"]) == ("0.6", "128", "2")
    assert upload["MIN_IMAGE_SIDE"] == "128" and "GATE_THRESHOLD" not in upload
    unset = env_vars(one(commands, *RUN_INFER))
    assert not {"GATE_THRESHOLD", "MIN_IMAGE_SIDE", "MODEL_THREADS"} & set(unset), "unset: the service's default"


RUN_INFER = ("gcloud", "run", "deploy", "infer")
DEPLOY_UPLOAD = ("gcloud", "functions", "deploy", "upload")


def test_dry_run_needs_a_project(tmp_path):
    done = subprocess.run(
        ["bash", "deploy/deploy.sh", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "WORK_DIR": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2 and "--project" in done.stderr


def test_a_lookup_that_fails_or_prints_nothing_stops_the_deploy(tmp_path):
    # a gcloud that answers every call with success and no output: the first value the script reads from it (the
    # access token) is empty, and deploying on with empty URLs would hand upload INFER_URL= and STATUS_URL=/
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("gcloud", "curl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        (bin_dir / tool).chmod(0o755)
    done = subprocess.run(
        ["bash", "deploy/deploy.sh", "--project", "my-proj", "--region", "europe-west1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "WORK_DIR": str(tmp_path / "work"), "HOME": str(tmp_path)},
    )
    assert done.returncode == 1 and "printed nothing" in done.stderr, done.stderr[-2000:]
    assert "functions deploy" not in calls.read_text() and "run deploy" not in calls.read_text()
