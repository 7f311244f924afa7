"""The spec-to-facts corpus: tests/spec_cases/cases.json, one host spec per case.

Each case patches the spec a host would send for the policy's `web` container (dotted paths),
reads it as the agent does (the guest's device nodes included), and asks the engine. A case
names the facts the reader must produce, and the decision (allowed, or the rule and a phrase
of the reason), or `refused`: the JSON path a malformed spec is refused at.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from guestagent.containers.spec import read_create
from guestagent.errors import InvalidArgumentError
from guestagent.policy.engine import decide
from tests.policy import world

CASES = Path(__file__).resolve().parent.parent / "spec_cases" / "cases.json"
ROOTFS = "/run/rootfs/c1"  # the overlay world's "overlay" scenario mounted for c1
WEB_SPEC: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "process": {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
        "args": ["/app/server", "--port", "8080"],
        "env": [world.PATH, "PORT=8080"],
        "cwd": "/app",
        "capabilities": {k: world.DEFAULT_CAPS for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "mounts": [
        {
            "destination": "/data",
            "type": "bind",
            "source": "/run/scratch/abc/data",
            "options": ["rw", "rbind"],
        }
    ],
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
    },
}


def spec_for(case: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(WEB_SPEC)
    for dotted, value in case.get("spec", {}).items():
        *parents, last = dotted.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = copy.deepcopy(value)
    return spec


def _subset(expected: Any, got: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(
            k in got and _subset(v, got[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(expected) == len(got)
            and all(_subset(e, g) for e, g in zip(expected, got, strict=True))
        )
    return expected == got


def _load() -> list[Any]:
    return [pytest.param(c, id=c["description"]) for c in json.loads(CASES.read_text())]


def test_the_corpus_has_allowed_denied_and_refused_cases() -> None:
    cases = json.loads(CASES.read_text())
    assert {c.get("allowed") for c in cases} == {True, False, None}


@pytest.mark.parametrize("case", _load())
def test_spec_case(case: dict[str, Any]) -> None:
    spec = spec_for(case)
    if "refused" in case:
        with pytest.raises(InvalidArgumentError) as caught:
            read_create("c1", spec, ROOTFS)
        assert caught.value.details["path"] == case["refused"]
        return
    facts, _ = read_create("c1", spec, ROOTFS)
    assert _subset(case.get("facts", {}), facts), facts
    policy = world.load_policy(case.get("policy", "main"))
    state = world.build_state(policy, "overlay")
    decision = decide(policy, state, "create_container", facts)
    assert decision.allowed is case["allowed"], decision.reason
    if decision.allowed:
        for key, value in case.get("data", {}).items():
            assert decision.data[key] == value, key
        return
    assert decision.rule == case["rule"]
    assert case.get("reason", "") in decision.reason
