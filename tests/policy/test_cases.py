"""The data-driven corpus: tests/policy_cases/<point>/cases.json, one case per request.

Each case names a policy and a setup scenario (from world.py), the input (inline, or a
template with a patch), whether it is allowed, and for a denial the rule, a phrase of the
reason and values the explanation must carry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from guestagent.policy.engine import MUTATING_POINTS, POINTS, decide
from guestagent.policy.rules._common import MAX_REASON
from guestagent.policy.rules._match import DEFAULT_PRIVILEGED_CAPS
from tests.policy import world

CASES_DIR = Path(__file__).resolve().parent.parent / "policy_cases"
PRIV = sorted(DEFAULT_PRIVILEGED_CAPS)
SUBSTITUTIONS: dict[str, Any] = {
    "$L1": world.L1,
    "$L2": world.L2,
    "$L3": world.L3,
    "$BOGUS": world.layer("bogus"),
    "$DEV_MEM": world.MEM,
    "$DEV_FUSE": world.FUSE,
    "$PRIV_CAPS": {
        "bounding": PRIV,
        "effective": PRIV,
        "inheritable": PRIV,
        "permitted": PRIV,
        "ambient": [],
    },
}


def _substitute(value: Any) -> Any:
    if isinstance(value, str):
        return SUBSTITUTIONS.get(value, value)
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    return value


def _load() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*/cases.json")):
        for case in json.loads(path.read_text()):
            case = _substitute(case)
            params.append(
                pytest.param(
                    path.parent.name, case, id=f"{path.parent.name}: {case['description']}"
                )
            )
    return params


def _lookup(details: Any, dotted: str) -> Any:
    value = details
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return value


def test_every_point_has_cases() -> None:
    covered = {p.parent.name for p in CASES_DIR.glob("*/cases.json")}
    missing = {p for p in POINTS if not p.startswith("console_")} - covered
    assert not missing


def test_every_point_has_allowed_and_denied_cases() -> None:
    for path in CASES_DIR.glob("*/cases.json"):
        outcomes = {case["allowed"] for case in json.loads(path.read_text())}
        if not path.parent.name.startswith("console_"):
            assert outcomes == {True, False}, path.parent.name


@pytest.mark.parametrize(("point", "case"), _load())
def test_case(point: str, case: dict[str, Any]) -> None:
    policy = world.load_policy(case.get("policy", "main"))
    state = world.build_state(policy, case.get("setup", "empty"))
    decision = decide(policy, state, point, world.build_input(case))
    assert decision.allowed is case["allowed"], decision.reason
    assert decision.point == point
    if decision.allowed:
        assert decision.next_state.before is state
        if point not in MUTATING_POINTS:
            # the dispatcher runs these without the mutation lock: they must change nothing
            assert decision.next_state.after is state
        for key, value in case.get("data", {}).items():
            assert decision.data[key] == value, key
        return
    assert decision.next_state is None
    assert decision.rule == case["rule"]
    assert case.get("reason", "") in decision.reason
    assert len(decision.reason) <= MAX_REASON
    assert decision.details["point"] == point
    assert decision.details["field"] == case["rule"].split(".", 1)[1]
    for dotted, value in case.get("details", {}).items():
        assert _lookup(decision.details, dotted) == value, dotted
    assert len(json.dumps(decision.details)) < 3072
