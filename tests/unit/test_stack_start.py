"""The local stack starts a part again once when it exits before it answers (real child processes, real ports)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from devstack import stack

# Appends a line to the count file on every start; exits with 3 while fewer than ``fail_first`` starts were made,
# then serves HTTP on the port.
PART = """
import http.server, pathlib, sys
count, fail_first, port = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with count.open("a") as f:
    f.write("start\\n")
if len(count.read_text().splitlines()) <= fail_first:
    sys.exit(3)
http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_stack(tmp_path: Path, monkeypatch, fail_first: int) -> tuple[stack.Stack, Path]:
    port, count = free_port(), tmp_path / "starts"
    command = [sys.executable, "-c", PART, str(count), str(fail_first), str(port)]
    monkeypatch.setattr(stack, "commands", lambda s: {"web": command})
    return stack.Stack({"STACK_DIR": str(tmp_path / "stack"), "WEB_PORT": str(port)}), count


def test_a_part_that_exits_before_it_answers_is_started_again(tmp_path, monkeypatch, capsys):
    parts, count = part_stack(tmp_path, monkeypatch, fail_first=1)
    try:
        pid = parts.start("web")
        assert count.read_text().splitlines() == ["start", "start"]
        assert parts._pids()["web"] == pid and parts.alive(pid)
        assert stack.answers("web", stack.port_of("web", parts.s))
        assert "web exited with status 3 before it answered; starting it again" in capsys.readouterr().err
    finally:
        parts.stop("web")
    assert not parts.alive(pid)


def test_a_part_that_never_answers_fails_after_the_last_attempt(tmp_path, monkeypatch):
    parts, count = part_stack(tmp_path, monkeypatch, fail_first=99)
    with pytest.raises(RuntimeError, match="web did not start"):
        parts.start("web")
    assert len(count.read_text().splitlines()) == stack.START_ATTEMPTS
    assert "web" not in parts._pids()


def test_free_ports_are_all_different_and_a_stack_refuses_two_parts_on_one_port(tmp_path):
    ports = stack.free_ports()
    assert set(ports) == set(stack.PORTS) and len(set(ports.values())) == len(stack.PORTS)
    stack.Stack({"STACK_DIR": str(tmp_path), **ports})  # distinct ports: accepted
    clash = {**ports, "AUTH_PORT": ports["INFER_PORT"]}
    with pytest.raises(ValueError, match=f"INFER_PORT, AUTH_PORT share {ports['INFER_PORT']}"):
        stack.Stack({"STACK_DIR": str(tmp_path), **clash})


def test_a_part_whose_leader_was_killed_is_stopped_with_its_children(tmp_path, monkeypatch):
    # the Firestore emulator is a wrapper script whose Java child serves the port: kill -9 on the wrapper (the
    # recorded pid) leaves the child; make down must still end it, or make up finds the port taken for good
    port, script = free_port(), tmp_path / "part.py"
    script.write_text(PART)
    wrapper = ["bash", "-c", f'"{sys.executable}" "{script}" "{tmp_path / "starts"}" 0 {port} & wait']
    monkeypatch.setattr(stack, "commands", lambda s: {"web": wrapper})
    parts = stack.Stack({"STACK_DIR": str(tmp_path / "stack"), "WEB_PORT": str(port)})
    leader = parts.start("web")
    os.kill(leader, signal.SIGKILL)
    time.sleep(0.3)
    assert stack.answers("web", port), "the child still serves"
    parts.stop("web")
    assert not parts.group_alive(leader) and not stack.answers("web", port)


def test_a_failed_up_stops_the_parts_it_started(tmp_path, monkeypatch):
    ok, never = free_port(), free_port()
    serve = [sys.executable, "-c", PART, str(tmp_path / "a"), "0", str(ok)]
    fail = [sys.executable, "-c", PART, str(tmp_path / "b"), "99", str(never)]
    monkeypatch.setattr(stack, "commands", lambda s: {"web": serve, "sweep": fail})
    parts = stack.Stack({"STACK_DIR": str(tmp_path / "stack"), "WEB_PORT": str(ok), "SWEEP_PORT": str(never)})
    with pytest.raises(RuntimeError, match="sweep did not start"):
        parts.up(("web", "sweep"))
    assert parts._pids() == {} and not stack.answers("web", ok)
