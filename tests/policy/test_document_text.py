"""Policy load refuses unknown capability names and control characters, naming the place."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from guestagent.capabilities import ALL_CAPABILITIES
from guestagent.errors import ErrorCode
from guestagent.policy.document import CAPABILITY_SETS, PolicyFormatError, parse_policy
from tests.policy.world import CAPS, MAIN_POLICY


def _parse_with(path: list[Any], value: Any) -> Any:
    doc = copy.deepcopy(MAIN_POLICY)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return parse_policy(json.dumps(doc).encode())


def _refused(path: list[Any], value: Any) -> PolicyFormatError:
    with pytest.raises(PolicyFormatError) as info:
        _parse_with(path, value)
    assert info.value.code is ErrorCode.POLICY_INVALID
    return info.value


@pytest.mark.parametrize("name", ["CAP_SYS_ADMN", "CAP_SYS_ADMIN ", "cap_sys_admin", "SYS_ADMIN"])
@pytest.mark.parametrize("cap_set", CAPABILITY_SETS)
def test_unknown_capability_names_are_refused(name: str, cap_set: str) -> None:
    caps = {**CAPS, cap_set: [*CAPS[cap_set], name]}
    error = _refused(["containers", 0, "capabilities"], caps)
    index = len(CAPS[cap_set])
    assert error.path == f"$.containers[0].capabilities.{cap_set}[{index}]"
    assert f"unknown capability {name!r}" in error.message


def test_every_known_capability_loads() -> None:
    every = sorted(ALL_CAPABILITIES)
    caps = {"bounding": every, "effective": every, "inheritable": [], "permitted": every}
    policy = _parse_with(["containers", 0, "capabilities"], {**caps, "ambient": []})
    assert policy.containers[0].capabilities.bounding == ALL_CAPABILITIES


# (where in the document, the value with a control character, the JSON path named)
PLACES = [
    (["containers", 0, "name"], "we\x1b[2Jb", "$.containers[0].name"),
    (["containers", 0, "command"], ["/app/server\r", "--port"], "$.containers[0].command[0]"),
    (["containers", 0, "command"], ["/app/server", "\x00"], "$.containers[0].command[1]"),
    (["containers", 0, "working_dir"], "/app\x7f", "$.containers[0].working_dir"),
    (
        ["containers", 0, "env_rules", 0, "pattern"],
        "PATH=/bin\x1b]0;x\x07",
        "$.containers[0].env_rules[0].pattern",
    ),
    (
        ["containers", 0, "env_rules", 1, "pattern"],
        "PORT=[0-9]\n",
        "$.containers[0].env_rules[1].pattern",
    ),
    (
        ["containers", 0, "mounts", 0, "destination"],
        "/data\x85",
        "$.containers[0].mounts[0].destination",
    ),
    (["containers", 0, "mounts", 0, "source"], "/run/\t", "$.containers[0].mounts[0].source"),
    (
        ["containers", 0, "exec_processes", 0, "command"],
        ["/app/health\x08\x08"],
        "$.containers[0].exec_processes[0].command[0]",
    ),
    (
        ["containers", 0, "exec_processes", 1, "working_dir"],
        "/data\r",
        "$.containers[0].exec_processes[1].working_dir",
    ),
    (["containers", 2, "devices"], ["/dev/fuse\n"], "$.containers[2].devices[0]"),
    (["containers", 2, "sysctls"], {"net.core\x1b": "1"}, "$.containers[2].sysctls.net.core\x1b"),
    (["containers", 2, "sysctls"], {"net.core.x": "1\r"}, "$.containers[2].sysctls.net.core.x"),
    (
        ["external_processes", 0, "command"],
        ["/bin/dmesg\x9b"],
        "$.external_processes[0].command[0]",
    ),
    (
        ["external_processes", 0, "working_dir"],
        "/\x0b",
        "$.external_processes[0].working_dir",
    ),
    (["copy_file", "destinations"], ["/etc/x\x1b"], "$.copy_file.destinations[0]"),
    (["network", "interface_patterns"], ["eth\x000"], "$.network.interface_patterns[0]"),
]


@pytest.mark.parametrize(("path", "value", "where"), PLACES, ids=[p[2] for p in PLACES])
def test_control_characters_are_refused_naming_the_place(
    path: list[Any], value: Any, where: str
) -> None:
    error = _refused(path, value)
    assert error.path == where
    assert "must not contain control characters (U+" in error.message


def test_argv_may_hold_a_multi_line_script() -> None:
    """Tabs and newlines stay allowed in argv (`sh -c` scripts); nothing else is."""
    script = ["/bin/sh", "-c", "set -e\n\techo ready\n"]
    policy = _parse_with(["containers", 0, "command"], script)
    assert policy.containers[0].command == tuple(script)
    external = _parse_with(["external_processes", 0, "command"], script)
    assert external.external_processes[0].command == tuple(script)
    error = _refused(["containers", 0, "command"], ["/bin/sh", "-c", "echo\r\n"])
    assert "U+000D at offset 4" in error.message
