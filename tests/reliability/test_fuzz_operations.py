"""Fuzzing every operation's argument validation against an agent that enforces a policy.

The agent runs with simulated SNP and the reliability policy adopted, a verified layer
mounted, and containers in several states, so well-formed requests get past validation into
prepare and the policy decision (and some effects). For each op name in hello's list,
hypothesis draws arguments from the op's own schema (right types, values near the real ids,
specs mutated from allowed ones) mixed with wrong types, missing and unknown fields.

Properties: every request gets exactly one reply, with a result or a known error code that is
never `internal` (an unexpected exception is a bug even when it fails closed); the agent never
crashes or hangs; its memory stays bounded. Waits are capped at half a second so that a
valid wait on a running container is not mistaken for a hang.
GUESTAGENT_FUZZ_EXAMPLES raises the example count.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from guestagent.client import Client
from guestagent.demo import assets
from guestagent.errors import ErrorCode
from guestagent.protocol.schema import REQUIRED, Field
from guestagent.server.ops import all_operations
from tests.integration.agent_process import AgentProcess
from tests.reliability.world import (
    SLEEP_COMMAND,
    ReliabilityWorld,
    agent_with_policy,
    prepare_overlay,
    spec,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime]

EXAMPLES = int(os.environ.get("GUESTAGENT_FUZZ_EXAMPLES", "300"))
CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
SCHEMAS = {op.name: op.args for op in all_operations()}
IDS = ["base", "extra", "live", "ready", "created", "c1", "new", "x" * 129, "../etc", "", "a b"]
WAIT_CAP = 0.5

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=16,
)


@st.composite
def mutated_spec(draw: st.DrawFn) -> dict[str, Any]:
    base = copy.deepcopy(
        draw(
            st.sampled_from(
                [spec(), spec(SLEEP_COMMAND), assets.host_spec(), assets.exec_process()]
            )
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from([base, base.get("process", base), base.get("linux", base)]))
        if not isinstance(section, dict) or not section:
            continue
        key = draw(st.sampled_from([*section, draw(st.text(max_size=8))]))
        if draw(st.booleans()) and key in section:
            del section[key]
        else:
            section[key] = draw(anything)
    return base


def value_for(name: str, field: Field) -> st.SearchStrategy[Any]:
    typed: list[st.SearchStrategy[Any]] = []
    for kind in field.types:
        if kind is str:
            typed.append(st.sampled_from(IDS) | st.text(max_size=40) | st.just("/config/fuzz"))
        elif kind is bytes:
            typed.append(st.binary(max_size=64))
        elif kind is bool:
            typed.append(st.booleans())
        elif kind is int:
            typed.append(st.integers(-2, 70) | st.integers(-(2**63), 2**64 - 1))
        elif kind is float:
            typed.append(st.floats(-1, 5))
        elif kind is type(None):
            typed.append(st.none())
        elif kind is list:
            typed.append(
                st.lists(st.sampled_from(IDS), max_size=4)
                | st.lists(st.text(max_size=10), max_size=4)
                | st.just(["/bin/true"])
            )
        elif kind is dict:
            typed.append(mutated_spec())
    return st.one_of(*typed) if typed else anything


@st.composite
def arguments(draw: st.DrawFn, op: str) -> dict[str, Any]:
    schema = SCHEMAS.get(op, {})
    args: dict[str, Any] = {}
    for name, field in schema.items():
        choice = draw(st.integers(0, 9))
        if choice == 0 and field.default is not REQUIRED:
            continue  # omitted: the default applies
        if choice == 1:
            continue  # omitted even if required
        args[name] = draw(anything) if choice == 2 else draw(value_for(name, field))
    if draw(st.integers(0, 9)) == 0:
        args[draw(st.text(min_size=1, max_size=8))] = draw(anything)
    return cap_waits(op, args)


def cap_waits(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """A valid wait on a running process legitimately blocks: bound it, keep invalid ones."""
    if op in ("wait_process", "read_output", "wait_oom_event"):
        timeout = args.get("timeout")
        if timeout is None or (
            type(timeout) in (int, float) and not isinstance(timeout, bool) and timeout > WAIT_CAP
        ):
            args["timeout"] = WAIT_CAP
    return args


@pytest.fixture(scope="module")
def agent(world: ReliabilityWorld) -> Iterator[AgentProcess]:
    with agent_with_policy(world) as process, Client.connect(process.uri) as client:
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        client.call("mount_layer", {"layer_id": "extra", "source": str(world.extra)})
        for cid in ("live", "ready", "created"):
            prepare_overlay(client, cid)
        client.call("create_container", {"container_id": "live", "spec": spec(SLEEP_COMMAND)})
        client.call("start_container", {"container_id": "live"})
        client.call("create_container", {"container_id": "created", "spec": spec()})
        yield process


@pytest.fixture(scope="module")
def op_names(agent: AgentProcess) -> list[str]:
    with Client.connect(agent.uri, hello=False) as client:
        ops = client.hello()["ops"]
    assert set(ops) == set(SCHEMAS)
    return ops


def connect(agent: AgentProcess) -> Client:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)  # longer than any capped wait: a missing reply is a hang
    sock.connect(agent.socket_path)
    client = Client(sock)
    client.hello()
    return client


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_operation_answers_with_a_result_or_a_known_code(
    agent: AgentProcess, op_names: list[str], data: st.DataObject
) -> None:
    ops = data.draw(st.lists(st.sampled_from(op_names), min_size=1, max_size=4))
    batch = [(op, data.draw(arguments(op))) for op in ops]
    with connect(agent) as client:
        replies = client.call_many(batch)
        for (op, args), reply in zip(batch, replies, strict=True):
            assert reply["ok"] in (True, False)
            event(f"{op}: {reply['error']['code'] if not reply['ok'] else 'ok'}")
            if not reply["ok"]:
                error = reply["error"]
                assert error["code"] in CODES, (op, args, error)
                assert len(error["message"]) <= 3072
        assert client.ping(b"sync") == {"payload": b"sync"}
    assert agent.process.poll() is None


def test_memory_stayed_bounded_and_the_agent_serves(agent: AgentProcess) -> None:
    process = psutil.Process(agent.process.pid)
    before = process.memory_info().rss
    with connect(agent) as client:
        for i in range(300):
            client.call_many(
                [
                    ("container_state", {"container_id": "live"}),
                    ("create_container", {"container_id": f"n{i}", "spec": spec()}),
                    ("mount_overlay", {"container_id": "x", "layer_ids": ["extra", "base"]}),
                ]
            )
        assert client.status()["policy"]["state"] == "enforcing"
    grown = process.memory_info().rss - before
    assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes"
