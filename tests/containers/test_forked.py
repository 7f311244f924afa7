"""A function run in a fork of the agent (containers/forked.py): its pipes, its exit status,
and nothing it inherits acting for the agent (fds, stdio buffers, atexit hooks, signals,
asyncio's wakeup fd). Each scenario runs in a fresh single-threaded interpreter in its own
session (fork_scenarios.py), so a signal to its process group reaches nothing else."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).with_name("fork_scenarios.py")


def scenario(name: str) -> tuple[dict, list[str]]:
    result = subprocess.run(
        [sys.executable, str(SCENARIOS), name],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    json_line = next(line for line in lines if line.startswith("{"))
    return json.loads(json_line), lines


def test_a_fork_has_only_its_three_pipes_and_reports_a_failure_in_one_line() -> None:
    seen, _ = scenario("pipes")
    assert seen["upper"] == {"code": 0, "out": "SIGN ME", "err": ""}
    assert seen["kept"] and json.loads(seen["fds"]["out"]) == [0, 1, 2]  # the pipes alone
    assert seen["fail"] == {"code": 1, "out": "", "err": "ValueError: no key for this chip\n"}


def test_a_fork_flushes_none_of_the_agents_buffers_and_runs_none_of_its_hooks() -> None:
    seen, lines = scenario("stdio")
    assert seen == {"code": 1, "out": "", "err": "ValueError: no key for this chip\n"}
    assert lines == ["buffered", "end", lines[2], "atexit"]  # each once, from the agent


def test_a_signal_to_the_child_or_the_group_is_handled_once_by_the_agent() -> None:
    seen, _ = scenario("signals")
    term = 128 + signal.SIGTERM
    assert seen["alone"]["code"] == term  # default disposition in the child: it ends
    assert seen["handled_after_child"] == 0  # and the agent's loop never heard of it
    assert seen["group"]["code"] == term
    assert seen["handled_after_group"] == 1


def test_a_fork_is_reaped_by_the_agents_reaper() -> None:
    seen, _ = scenario("reaper")
    assert seen["done"] == {"code": 0, "out": "REAPED", "err": ""}
    assert seen["orphans"] == 0  # its status reached its own waiter


def test_no_fork_while_other_threads_run() -> None:
    seen, _ = scenario("threads")
    assert seen == {"can_fork": False, "error": "fork with other threads running"}
