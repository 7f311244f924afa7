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
