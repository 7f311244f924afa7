"""The simulator's signing child at start-up, in the real agent: it is a fork of the agent,
started ahead of adopting the policy given with --policy; a SIGTERM to the agent's process
group while it exists ends the child and is handled once by the agent, which exits cleanly
and leaves no process of its group behind. Without --policy no child is made before the
host's policy arrives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from guestagent.policy.measure import measure

REPO = Path(__file__).resolve().parents[2]
ATTEMPTS = 20  # the child lives for tens of milliseconds: each start is one chance to see it


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def start_agent(tmp_path: Path, n: int, with_policy: bool = True) -> subprocess.Popen[bytes]:
    policy = tmp_path / "policy.json"
    if not policy.exists():
        policy.write_bytes(json.dumps({"version": 1, "containers": []}).encode())
        (tmp_path / "sim").mkdir(mode=0o700)
    return subprocess.Popen(
        [sys.executable, "-m", "guestagent", "serve",
         "--listen", f"unix://{tmp_path}/agent{n}.sock", "--state-dir", str(tmp_path / f"s{n}"),
         "--snp", "sim", "--sim-state", str(tmp_path / "sim"),
         *(("--policy", str(policy)) if with_policy else ()),
         "--sim-host-data", measure(policy.read_bytes()).host_data_hex, "--log-level", "info"],
        stderr=open(tmp_path / f"agent{n}.log", "wb"),
        cwd=REPO,
        start_new_session=True,  # its own process group: the signal reaches nothing else
    )  # fmt: skip


def signing_child(agent: subprocess.Popen[bytes], socket: Path) -> int | None:
    """The agent's child while it has one, polled until the agent listens or exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and agent.poll() is None and not socket.exists():
        for pid in children_of(agent.pid):
            return pid
    return None


def test_a_sigterm_to_the_group_during_start_ends_the_fork_and_is_handled_once(tmp_path):
    for n in range(ATTEMPTS):
        agent = start_agent(tmp_path, n)
        child = signing_child(agent, tmp_path / f"agent{n}.sock")
        if child is not None:
            forked = cmdline(child) == cmdline(agent.pid)  # an exec'd child runs sign_child.py
            os.killpg(agent.pid, signal.SIGTERM)
            code = agent.wait(timeout=60)
            break
        agent.terminate()  # too late: it had signed already; start again
        agent.wait(timeout=60)
    else:
        raise AssertionError(f"no signing child seen in {ATTEMPTS} starts")
    log = (tmp_path / f"agent{n}.log").read_text()
    assert forked
    assert code == 0, log
    assert log.count('"shutdown requested"') == 1, log
    if "policy not adopted" in log:  # the child was ended before it signed, not after
        assert "failed to sign (exit 143)" in log, log
    assert group_members(agent.pid) == []
