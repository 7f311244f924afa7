"""The simulator's signing child at start-up, in the real agent: it is a fork of the agent,
started ahead of adopting the policy given with --policy (or, without one, once ready, at idle
priority, for the policy the host sends); a SIGTERM to the agent's process group while it
exists ends the child and is handled once by the agent, which exits cleanly and leaves no
process of its group behind."""

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


def nice_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19: nice


def test_without_a_policy_a_fork_waits_at_idle_priority_and_signs_the_hosts_policy(tmp_path):
    from guestagent.client import Client

    agent = start_agent(tmp_path, 0, with_policy=False)
    try:
        socket = tmp_path / "agent0.sock"
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with Client.connect(f"unix://{socket}") as client:
            assert client.status()["policy"]["state"] == "none"
            (child,) = children_of(agent.pid)  # started once ready
            assert cmdline(child) == cmdline(agent.pid)
            # The fork lowers its own priority first thing, but after the fork returns here.
            deadline = time.monotonic() + 30
            while nice_of(child) != 19 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert nice_of(child) == 19
            policy = (tmp_path / "policy.json").read_bytes()
            client.call("set_policy", {"policy": policy})
            assert client.status()["policy"]["state"] == "enforcing"
            assert children_of(agent.pid) == []  # it signed and was reaped
    finally:
        agent.terminate()
        code = agent.wait(timeout=60)
    assert code == 0, (tmp_path / "agent0.log").read_text()
    assert group_members(agent.pid) == []
