"""The shortcut of Checks.for_request: a check skipped because its field holds its absent
value passes, for every policy container, whatever the rest of the request says."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.policy.rules import create, process
from guestagent.policy.rules._candidates import Checks
from tests.policy import world
from tests.policy.test_create_matching import policies, requests


def _skipped(checks: Checks) -> list[tuple[str, Any]]:
    return [(name, fn) for name, fn in checks.checks if name in checks.absent]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_skipped_check_passes_on_its_absent_value(data: Any) -> None:
    policy = data.draw(policies())
    request = dict(data.draw(requests(policy)))
    request.update(copy.deepcopy(create.CHECKS.absent))
    for container in policy.containers:
        for name, check in _skipped(create.CHECKS) + _skipped(process.EXEC_CHECKS):
            assert check(container, request) is None, name


@pytest.mark.parametrize("name", sorted(world.POLICIES))
def test_the_worlds_policies_pass_the_absent_values(name: str) -> None:
    policy = world.load_policy(name)
    request = {**copy.deepcopy(world.TEMPLATES["create_web"]), **create.CHECKS.absent}
    for container in policy.containers:
        for field, check in _skipped(create.CHECKS):
            assert check(container, request) is None, (container.name, field)


# A value each field may hold that is not its absent one: 0 is neither None nor absent.
PRESENT = {
    "privileged": True,
    "terminal": True,
    "devices": [world.device("/dev/fuse")],
    "sysctl": {"net.x": "1"},
    "umask": 0,
    "hostname": "x",
    "masked_paths": ["/x"],
    "readonly_paths": ["/x"],
    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}],
    "oom_score_adj": 0,
}


def test_the_shortcut_applies_only_when_every_absent_field_is_absent() -> None:
    request = {**world.TEMPLATES["create_web"], **create.CHECKS.absent}
    assert create.CHECKS.for_request(request) is create.CHECKS.core
    assert set(PRESENT) == set(create.CHECKS.absent)
    for field, present in PRESENT.items():
        changed = {**request, field: present}
        assert create.CHECKS.for_request(changed) is create.CHECKS.all, field
    exec_request = {**world.TEMPLATES["exec_web"], "umask": 0}
    assert process.EXEC_CHECKS.for_request(exec_request) is process.EXEC_CHECKS.all
