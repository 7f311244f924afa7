"""No console input changes the agent: random requests, random arguments and random bytes
leave the agent's status, policy state, containers, mounts and files exactly as they were.
The only trace a console request leaves is the audit record of its own decision."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from typing import Any

import msgpack
from console_harness import (
    ALL_COMMANDS,
    adopt_policy,
    new_agent,
    policy_bytes,
    record_mounts,
    short_dir,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guestagent.console import ConsoleServer
from guestagent.server.ops import all_operations

OP_NAMES = sorted(
    {*ALL_COMMANDS, *(op.name for op in all_operations()), "mount_device", "create_container",
     "exec_in_container", "signal_container_process", "copy_file", "set_policy", "hello"}
)  # fmt: skip
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=80)
    | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
valid_args = {
    "report": st.fixed_dictionaries({"report_data": st.binary(min_size=64, max_size=64)}),
    "processes": st.fixed_dictionaries({"pid": st.sampled_from([None, 1, os.getpid()])}),
    "decisions": st.fixed_dictionaries(
        {"filter": st.sampled_from(["all", "allowed", "denied"]), "limit": st.integers(1, 1024)}
    ),
}
valid_request = st.sampled_from(ALL_COMMANDS).flatmap(
    lambda name: st.tuples(st.just(name), valid_args.get(name, st.just({})))
)
random_request = st.tuples(
    st.sampled_from(OP_NAMES) | st.text(max_size=12),
    st.dictionaries(st.text(max_size=12), plain, max_size=4)
    | st.fixed_dictionaries({"protocol": plain}),
)
raw_frames = st.lists(st.binary(max_size=64), max_size=3)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def request_frame(request_id: int, op: str, args: dict[str, Any]) -> bytes:
    return frame(msgpack.packb({"id": request_id, "op": op, "args": args}, use_bin_type=True))


async def read_reply(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    return msgpack.unpackb(await reader.readexactly(size), raw=False)


def files_under(root: Path) -> list[tuple[str, int, int]]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            stat = os.stat(os.path.join(directory, name))
            found.append((os.path.join(directory, name), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def snapshot(agent, sim_state: Path) -> dict[str, Any]:
    status = agent.status()
    del status["uptime_seconds"]
    policy = dict(status.pop("policy"))
    del policy["decisions"]  # the audit counters: checked separately below
    return {
        "status": status,
        "policy": policy,
        "gate": agent.gate,
        "engine_state": agent.gate.state,  # by identity: nothing was committed
        "engine_summary": agent.gate.state.summary(),
        "containers": agent.containers.list() if agent.containers else None,
        "mounts": agent.storage_view(),
        "agent_files": files_under(Path(agent.config.state_dir)),
        "sim_files": files_under(sim_state),
    }


async def converse(path: str, requests, frames: list[bytes]) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request_frame(0, "hello", {"protocol": 1}))
        for number, (op, args) in enumerate(requests, 1):
            writer.write(request_frame(number, op, args))
        replies = [await read_reply(reader) for _ in range(len(requests) + 1)]
        for payload in frames:  # malformed frames: answered or refused, never acted on
            writer.write(frame(payload))
        writer.write(request_frame(999, "status", {}))
        await writer.drain()
        while (reply := await read_reply(reader)).get("id") != 999:
            replies.append(reply)
        return replies
    finally:
        writer.close()


def test_no_console_input_changes_agent_state(tmp_path, sim_state):
    loop = asyncio.new_event_loop()
    agent = new_agent(tmp_path / "agent")
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "marker").write_text("agent state")
    adopt_policy(agent, policy_bytes(), sim_state)
    record_mounts(agent)
    directory = short_dir()
    console = ConsoleServer(agent, [f"unix://{directory}/c.sock"])
    loop.run_until_complete(console.start())
    before = snapshot(agent, sim_state)
    seen_ok: set[str] = set()

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(
        st.lists(valid_request | random_request, min_size=1, max_size=5),
        raw_frames,
    )
    @example([(name, {}) for name in ALL_COMMANDS], [b"\x81\xa2id\x01"])  # every command
    def property_(requests, frames):
        last_seq = agent.gate.log.entries(limit=1)[-1]["seq"]
        replies = loop.run_until_complete(converse(f"{directory}/c.sock", requests, frames))
        assert snapshot(agent, sim_state) == before
        new = [e for e in agent.gate.log.entries() if e["seq"] > last_seq]
        assert all(e["point"].startswith("console_") for e in new), new
        by_id = {reply["id"]: reply for reply in replies}
        seen_ok.update(op for number, (op, _) in enumerate(requests, 1) if by_id[number]["ok"])

    try:
        property_()
    finally:
        loop.run_until_complete(console.stop())
        loop.close()
    assert seen_ok == set(ALL_COMMANDS), "every command really ran"
