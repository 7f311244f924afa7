"""The policy's `joins`: which container of a pod joins which namespace of which other. The
policy document is checked as it is read; a request joins exactly what its entry names, of a
created container matched to the named entry, and nothing else."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from guestagent.containers.spec import read_create
from guestagent.demo import assets
from guestagent.errors import InvalidArgumentError
from guestagent.policy._reader import PolicyFormatError
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE, PolicyState

LAYER = hashlib.sha256(b"joins").hexdigest()
SLEEP, TRUE, FALSE = ["/bin/sleep", "1000"], ["/bin/true"], ["/bin/false"]


def entry(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "layers": [LAYER],
        "command": command,
        "env_rules": [{"pattern": assets.PATH}],
        "capabilities": {
            **{k: assets.CAPS for k in ("bounding", "effective", "permitted")},
            "inheritable": [],
            "ambient": [],
        },
        "hostname": "demo",
        **extra,
    }


def policy_of(*entries: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"version": 1, "containers": list(entries)}).encode())


POD = policy_of(
    entry("pause", SLEEP),
    entry("app", TRUE, joins={"ipc": "pause", "uts": "pause"}),
    entry("loner", FALSE),
)


def create(state: PolicyState, cid: str, args: list[str], joins: dict[str, str]) -> Decision:
    target = f"/run/overlay/{cid}"
    for point, request in (
        ("mount_device", {"target": f"/run/layers/{cid}", "device_hash": LAYER}),
        ("mount_overlay",
         {"container_id": cid, "layer_paths": [f"/run/layers/{cid}"], "target": target}),
    ):  # fmt: skip
        decision = decide(POD, state, point, request)
        assert decision.allowed, decision.reason
        state = decision.next_state.after
    facts, _ = read_create(cid, assets.host_spec(args, [assets.PATH]), target, joins)
    return decide(POD, state, "create_container", facts)


@pytest.fixture(scope="module")
def with_pause() -> PolicyState:
    decision = create(EMPTY_STATE, "p1", SLEEP, {})
    assert decision.allowed, decision.reason
    return decision.next_state.after


def test_the_named_join_is_allowed(with_pause):
    decision = create(with_pause, "a1", TRUE, {"ipc": "p1", "uts": "p1"})
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("cid", "args", "joins", "says"),
    [
        # The policy names app's joins: it must make them (a pod member cannot opt out).
        ("a1", TRUE, {}, "joins.ipc: the container must join the ipc namespace"),
        ("a1", TRUE, {"ipc": "p1"}, "joins.uts: the container must join the uts namespace"),
        # A join the policy does not name: of the right container, but for another type...
        ("a1", TRUE, {"ipc": "p1", "uts": "p1", "network": "p1"}, "joins.network: the policy "
         "names no network namespace"),
        # ... or by a container whose entry names no join at all.
        ("l1", FALSE, {"ipc": "p1"}, "joins.ipc: the policy names no ipc namespace"),
    ],
)  # fmt: skip
def test_an_unnamed_or_missing_join_is_denied(with_pause, cid, args, joins, says):
    decision = create(with_pause, cid, args, joins)
    assert not decision.allowed
    assert decision.rule == "create_container.joins"
    assert says in decision.reason


def test_the_joined_container_must_be_the_named_one(with_pause):
    loner = create(with_pause, "l1", FALSE, {})
    assert loner.allowed, loner.reason
    decision = create(loner.next_state.after, "a1", TRUE, {"ipc": "l1", "uts": "p1"})
    assert not decision.allowed
    assert "joins.ipc: container l1 is not policy container 'pause'" in decision.reason


@pytest.mark.parametrize("target", ["nope", "a1"])
def test_only_a_created_container_other_than_itself_is_joined(with_pause, target):
    decision = create(with_pause, "a1", TRUE, {"ipc": target, "uts": "p1"})
    assert not decision.allowed
    assert decision.rule == "create_container.joins"
    assert f"container {target} is not a created container" in decision.reason


def test_a_join_needs_the_namespace_in_the_spec():
    spec = assets.host_spec(TRUE, [assets.PATH])
    spec["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    with pytest.raises(InvalidArgumentError, match=r"joins\.network: the spec has no network"):
        read_create("a1", spec, "/r", {"network": "p1"})
    with pytest.raises(InvalidArgumentError, match=r"joins\.pid: only ipc, uts, network"):
        read_create("a1", spec, "/r", {"pid": "p1"})


@pytest.mark.parametrize(
    ("entries", "path", "says"),
    [
        ([entry("app", TRUE, joins={"ipc": "ghost"})], "joins.ipc", "names no other container"),
        ([entry("app", TRUE, joins={"ipc": "app"})], "joins.ipc", "names no other container"),
        ([entry("app", TRUE, joins={"pid": "app"})], "joins", "pid"),
        (
            [entry("a", TRUE, joins={"uts": "b"}), entry("b", SLEEP, joins={"uts": "c"}),
             entry("c", SLEEP)],
            "joins.uts",
            "joins its uts namespace itself",
        ),
        (
            [entry("app", TRUE, joins={"network": "pause"}),
             entry("pause", SLEEP, host_network=True)],
            "joins.network",
            "host_network",
        ),
    ],
)  # fmt: skip
def test_the_policy_document_checks_its_joins(entries, path, says):
    with pytest.raises(PolicyFormatError) as error:
        policy_of(*entries)
    assert path in str(error.value) and says in str(error.value)
