"""Denials of default mounts and capabilities name the whole required set."""

from __future__ import annotations

import copy
import json

from guestagent.policy.engine import decide
from tests.policy import world


def _create(**changes: object) -> dict:
    request = copy.deepcopy(world.TEMPLATES["create_web"])
    request.update(changes)
    return request


def _candidate(decision) -> dict:
    details = dict(decision.details)
    return details["candidates"][0] if "candidates" in details else details


def test_a_default_mount_without_its_options_names_them() -> None:
    policy = world.load_policy("main")
    state = world.build_state(policy, "overlay")
    request = _create()
    request["mounts"][1]["options"] = []  # /proc as `runc spec` writes it
    decision = decide(policy, state, "create_container", request)
    assert not decision.allowed and decision.rule.endswith("mounts")
    text = json.dumps(dict(decision.details))
    found = _candidate(decision)
    assert found["default_mount_requires"] == ["nodev", "noexec", "nosuid"], text
    assert found["missing_options"] == ["nodev", "noexec", "nosuid"]
    assert found["allowed"] != []


def test_a_capability_set_denial_lists_every_required_capability() -> None:
    policy = world.load_policy("main")
    state = world.build_state(policy, "overlay")
    fewer = world.DEFAULT_CAPS[:5]
    caps = {**world.CAPS, "bounding": fewer}
    decision = decide(policy, state, "create_container", _create(capabilities=caps))
    assert not decision.allowed
    text = json.dumps(dict(decision.details))
    assert "more" not in text, text
    found = _candidate(decision)
    assert found["allowed"] == world.DEFAULT_CAPS  # all 14, not cut at 8
    assert found["asked_missing"] == world.DEFAULT_CAPS[5:]
