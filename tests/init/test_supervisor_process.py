"""The real supervisor loop as a (non-PID-1) child subreaper in a subprocess, with real child
processes and an injected power-off action that records instead of rebooting the machine."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

# Runs supervise() in a fresh interpreter (subreaper status and the blocked signal mask must
# not leak into pytest), then prints what the injected power-off saw.
HARNESS = """
import json, os, sys
from guestagent.init.supervisor import supervise
seen = []
state = supervise(tuple(sys.argv[1:]), power_off=seen.append, log=lambda m: None, stop_grace=1.0)
orphans_left = []
try:
    orphans_left = [os.waitpid(-1, os.WNOHANG)]
except ChildProcessError:
    pass
print(json.dumps({"power_off": seen, "reaped": list(state.reaped), "phase": state.phase.value,
                  "left": orphans_left}))
"""


def run_supervisor(*argv: str, timeout: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HARNESS, *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def result(process: subprocess.Popen, timeout: float = 30.0) -> dict:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0
    return json.loads(out.splitlines()[-1])


def test_agent_exit_calls_power_off_and_orphans_are_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    # The inner shell starts a background sleep and exits at once: the sleep is orphaned and,
    # thanks to PR_SET_CHILD_SUBREAPER, re-parented to the supervisor, which must reap it.
    script = f'sh -c "sleep 0.3 & echo \\$! > {pidfile}"; sleep 1.5; exit 3'
    outcome = result(run_supervisor("sh", "-c", script))
    orphan = int(pidfile.read_text())
    assert outcome["phase"] == "done"
    assert len(outcome["power_off"]) == 1
    assert outcome["power_off"][0].endswith("ended unexpectedly: exit status 3")
    assert orphan in outcome["reaped"]
    assert outcome["left"] == []  # no zombie remains


def test_stop_signal_is_forwarded_to_the_agent(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f'trap "exit 7" TERM; touch {ready}; while :; do sleep 0.1; done'
    process = run_supervisor("sh", "-c", script)
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    outcome = result(process)
    (reason,) = outcome["power_off"]
    assert re.fullmatch(r"agent \(pid \d+\) ended after a stop signal: exit status 7", reason)


def test_agent_ignoring_stop_signal_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f'trap "" TERM; touch {ready}; while :; do sleep 0.1; done'
    process = run_supervisor("sh", "-c", script)
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    outcome = result(process)
    assert outcome["power_off"][0].endswith("after a stop signal: killed by signal SIGKILL")


def test_agent_that_cannot_start_powers_off() -> None:
    outcome = result(run_supervisor("/nonexistent/agent"))
    assert outcome["phase"] == "done"
    assert outcome["power_off"][0].startswith("cannot start the agent '/nonexistent/agent'")


def test_a_guestagent_command_runs_in_a_fork_not_a_second_interpreter(tmp_path: Path) -> None:
    # `<this python> -m guestagent serve ...` (init's default) runs in a fork of init: the
    # agent serves with init's command line, and its stop and exit status travel as before.
    from guestagent.client import Client

    socket = tmp_path / "agent.sock"
    process = run_supervisor(
        sys.executable, "-m", "guestagent", "serve", "--listen", f"unix://{socket}",
        "--snp", "none", "--no-containers", "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client.connect(f"unix://{socket}")
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "no agent"
                time.sleep(0.05)
        with client:
            pid = client.status()["pid"]
        assert pid != process.pid
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
        assert argv[1:3] == [b"-c", HARNESS.encode()]  # the supervisor's: no interpreter exec'd
    finally:
        os.kill(process.pid, signal.SIGTERM)
    (reason,) = result(process)["power_off"]
    assert reason == f"agent (pid {pid}) ended after a stop signal: exit status 0"


def test_a_forked_command_that_fails_reports_its_exit_status() -> None:
    argv = (sys.executable, "-m", "guestagent", "serve", "--max-frame", "10")
    (reason,) = result(run_supervisor(*argv))["power_off"]
    assert reason.endswith("ended unexpectedly: exit status 2")  # EXIT_USAGE


def test_only_this_interpreter_running_the_package_is_forked() -> None:
    from guestagent.init.supervisor import in_process_command

    ours = (sys.executable, "-m", "guestagent", "serve", "--listen", "x")
    assert in_process_command(ours) == ["serve", "--listen", "x"]
    assert in_process_command(("/other/python3", *ours[1:])) is None
    assert in_process_command((sys.executable, "-m", "other", "serve")) is None
    assert in_process_command((sys.executable, "-I", "-m", "guestagent", "serve")) is None
    assert in_process_command(("sh", "-c", "exit 3")) is None
