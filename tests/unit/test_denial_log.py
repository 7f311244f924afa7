"""A denial's log record: container, rule, field and candidates, with env values scrubbed."""

from __future__ import annotations

import json

from guestagent.policy.engine import decide
from guestagent.server.logs import denial_record
from tests.policy import world


def test_an_env_denial_names_everything_but_the_value() -> None:
    policy = world.load_policy("main")
    state = world.build_state(policy, "overlay")
    request = {
        **world.TEMPLATES["create_web"],
        "env": [world.PATH, "LD_PRELOAD=/tmp/s3cret-token.so"],
    }
    decision = decide(policy, state, "create_container", request)
    assert not decision.allowed
    record = denial_record(decision, request)
    text = json.dumps(record)
    assert "s3cret-token" not in text
    assert "LD_PRELOAD=<" in text  # the name stays: it is what the operator needs
    assert record["container_id"] == request["container_id"]
    assert record["rule"] == decision.rule and record["rule"].endswith(".env")
    assert record["field"] == "env"
    assert world.PATH in text  # the policy's own rules are candidates, not secrets
