"""An exec's OCI process: what the reader refuses, what the engine decides (the umask), and
the process built from the decision."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from guestagent.containers.exec_spec import build_exec_process, exec_input
from guestagent.errors import InvalidArgumentError
from guestagent.policy.engine import decide
from tests.policy import world

PROCESS: dict[str, Any] = {
    "args": ["/app/health"],
    "env": [world.PATH],
    "cwd": "/app",
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
    "capabilities": {k: world.DEFAULT_CAPS for k in ("bounding", "effective", "permitted")},
    "noNewPrivileges": True,
}


def _decide(process: dict[str, Any]) -> Any:
    policy = world.load_policy("main")
    state = world.build_state(policy, "started")
    return decide(policy, state, "exec_in_container", exec_input("c1", process))


def test_an_exec_without_a_umask_gets_the_containers() -> None:
    decision = _decide(PROCESS)
    assert decision.allowed, decision.reason
    built = build_exec_process(PROCESS, decision.data)
    assert built["user"]["umask"] == 0o022


@pytest.mark.parametrize("umask", [0, 0o077, 0o002])
def test_an_exec_stating_another_umask_is_denied_by_the_engine(umask: int) -> None:
    process = copy.deepcopy(PROCESS)
    process["user"]["umask"] = umask
    assert exec_input("c1", process)["umask"] == umask  # a fact the engine sees
    decision = _decide(process)
    assert not decision.allowed
    assert decision.rule == "exec_in_container.umask"
    assert f"umask {umask:04o} is not the policy's" in decision.reason


def test_an_exec_stating_the_containers_umask_is_allowed() -> None:
    process = copy.deepcopy(PROCESS)
    process["user"]["umask"] = 0o022
    decision = _decide(process)
    assert decision.allowed, decision.reason
    assert build_exec_process(process, decision.data)["user"]["umask"] == 0o022


@pytest.mark.parametrize("bad", ["\x1b[2J", "a\x07", "\r", "\x7f", "\x85", "\x00"])
def test_an_argument_with_a_control_character_is_refused_naming_it(bad: str) -> None:
    process = {**PROCESS, "args": ["/app/health", bad]}
    with pytest.raises(InvalidArgumentError) as caught:
        exec_input("c1", process)
    assert caught.value.details["path"] == "process.args[1]"


def test_tab_and_newline_reach_the_engine_and_match_only_a_command_holding_them() -> None:
    process = {**PROCESS, "args": ["/app/health", "a\tb\n"]}
    assert exec_input("c1", process)["argv"] == ["/app/health", "a\tb\n"]
    decision = _decide(process)
    assert not decision.allowed and decision.rule == "exec_in_container.argv"
