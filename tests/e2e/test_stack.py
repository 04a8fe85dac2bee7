"""The local stack itself: loopback only, restart after a crash, `down` stops exactly what `up` started.
(Runs last in this folder: it takes the session's stack down and up again.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from devstack.stack import PARTS
from tests.conftest import REPO


def listening(pid: int) -> set[str]:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        conn.laddr.ip.removeprefix("::ffff:")
        for p in processes
        for conn in p.net_connections("inet")
        if conn.status == psutil.CONN_LISTEN
    }


def stack_cli(api, command: str) -> str:
    env = {**api.stack.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "devstack.stack", command],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


def test_every_server_listens_on_loopback_only(api):
    for name, pid in api.stack._pids().items():
        assert listening(pid) == {"127.0.0.1"}, name


def test_demo_leaves_a_running_stack_running(api):
    pids = api.stack._pids()
    done = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=REPO,
        env={**api.stack.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "left running" in done.stdout, done.stdout + done.stderr
    assert api.stack._pids() == pids and all(" up " in line for line in stack_cli(api, "status").splitlines())


def test_a_killed_firestore_wrapper_leaves_nothing_behind_after_up(api):
    # kill -9 on the recorded pid (a wrapper script) leaves its Java child on the port: up must end that group
    os.kill(api.stack._pids()["firestore"], signal.SIGKILL)
    stack_cli(api, "up")
    assert "firestore  up" in stack_cli(api, "status")


def test_up_after_a_crash_restarts_only_what_is_down(api, sharp_jpeg):
    pids = api.stack._pids()
    os.killpg(pids["status"], signal.SIGKILL)
    assert "status     down" in stack_cli(api, "status")
    stack_cli(api, "up")
    after = api.stack._pids()
    assert after["status"] != pids["status"]
    assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in pids.items() if k != "status"}
    job_id = api.upload("restart", sharp_jpeg).json()["jobId"]
    assert api.wait("restart", job_id)["status"] == "done"


def test_down_stops_exactly_its_process_groups_and_up_works_again(api, sharp_jpeg):
    pids = api.stack._pids()
    groups = {pid: [p.pid for p in psutil.Process(pid).children(recursive=True)] for pid in pids.values()}
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # not ours: must survive
    try:
        stack_cli(api, "down")
        for leader, children in groups.items():
            for pid in (leader, *children):
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert bystander.poll() is None
    finally:
        bystander.kill()
    output = stack_cli(api, "up")
    assert output.count(" up ") == len(PARTS), output
    assert f"web client: {api.web_url}" in output
    api.forget_tokens()  # the Auth emulator started empty: users sign up again
    job_id = api.upload("again", sharp_jpeg).json()["jobId"]
    assert api.wait("again", job_id)["status"] == "done"
