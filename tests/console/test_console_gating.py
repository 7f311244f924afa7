"""Each console command is gated by the policy's debug_console flags, fails closed without a
policy, and nothing but the console's own read-only commands is reachable."""

from __future__ import annotations

import asyncio

import pytest
from console_harness import ALL_COMMANDS, adopt_policy, console_client, new_agent, policy_bytes

from guestagent.console.server import ConsoleDispatcher, ConsoleServer
from guestagent.policy.engine import MUTATING_POINTS, POINTS
from guestagent.rpc.operation import Operation
from guestagent.server.ops import all_operations

# The agent's operations as the protocol names them (docs/protocol.md and the brief): these
# must never reach the console, whatever the agent's table holds today.
AGENT_OP_NAMES = {
    "ping",
    "mount_device",
    "unmount_device",
    "mount_overlay",
    "unmount_overlay",
    "mount_scratch",
    "unmount_scratch",
    "create_container",
    "start_container",
    "exec_in_container",
    "exec_external",
    "signal_container_process",
    "shutdown_container",
    "delete_container",
    "wait_container",
    "container_state",
    "list_containers",
    "get_properties",
    "dump_stacks",
    "runtime_logging",
    "network_change",
    "copy_file",
    "set_policy",
    "write_stdin",
    "close_stdin",
    "resize_terminal",
    "read_stdout",
    "stats",
}


async def _denials(client) -> dict[str, dict]:
    replies = {name: await client.request(name) for name in ALL_COMMANDS}
    return {name: reply["error"] for name, reply in replies.items() if not reply["ok"]}


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_each_command_is_denied_when_its_flag_is_off(tmp_path, sim_state, command):
    others = [c for c in ALL_COMMANDS if c != command]

    async def scenario():
        agent = new_agent(tmp_path)
        adopt_policy(agent, policy_bytes(others), sim_state)
        async with console_client(agent) as (_, client):
            denied = await _denials(client)
            log = None
            if command != "decisions":
                log = await client.call("decisions", {"filter": "denied"})
        return denied, log

    denied, log = asyncio.run(scenario())
    assert list(denied) == [command], "exactly the command whose flag is off is denied"
    error = denied[command]
    assert error["code"] == "policy.denied"
    assert error["rule"] == f"console_{command}.command"
    assert error["message"] == f"console_{command}: console command {command} is not allowed"
    assert error["details"]["allowed"] == sorted(others)
    if log is not None:
        assert [e["point"] for e in log["entries"]] == [f"console_{command}"]


def test_disabled_console_denies_everything_and_says_why(tmp_path, sim_state):
    async def scenario():
        agent = new_agent(tmp_path)
        adopt_policy(agent, policy_bytes(ALL_COMMANDS, enabled=False), sim_state)
        async with console_client(agent) as (_, client):
            return await _denials(client)

    denied = asyncio.run(scenario())
    assert sorted(denied) == sorted(ALL_COMMANDS)
    for command, error in denied.items():
        assert error["rule"] == f"console_{command}.debug_console"
        assert "debug console is disabled by the policy" in error["message"]


def test_policy_without_console_section_denies_everything(tmp_path, sim_state):
    raw = b'{"version": 1, "containers": []}'

    async def scenario():
        agent = new_agent(tmp_path)
        adopt_policy(agent, raw, sim_state)
        async with console_client(agent) as (_, client):
            return await _denials(client)

    assert sorted(asyncio.run(scenario())) == sorted(ALL_COMMANDS)


def test_without_a_policy_everything_is_denied(tmp_path):
    async def scenario():
        agent = new_agent(tmp_path)  # the agent's initial DenyAllGate
        async with console_client(agent) as (_, client):
            return await _denials(client)

    denied = asyncio.run(scenario())
    assert sorted(denied) == sorted(ALL_COMMANDS)
    for error in denied.values():
        assert error["code"] == "policy.not_adopted"
        assert "no policy has been delivered yet" in error["message"]


def test_no_agent_operation_is_reachable(tmp_path, sim_state):
    names = AGENT_OP_NAMES | {op.name for op in all_operations()} | set(POINTS)
    names -= set(ALL_COMMANDS)  # "status" is also an agent op: the console's is its own

    async def scenario():
        agent = new_agent(tmp_path)
        adopt_policy(agent, policy_bytes(), sim_state)
        async with console_client(agent) as (console, client):
            replies = {name: await client.request(name, {}) for name in sorted(names)}
            return console, replies

    console, replies = asyncio.run(scenario())
    assert names >= MUTATING_POINTS
    for name, reply in replies.items():
        assert reply["error"]["code"] == "protocol.unknown_op", name
    for name, operation in console.dispatcher.table.items():
        assert operation.point == f"console_{name}" and not operation.mutating


def _noop(agent, call):
    return None


@pytest.mark.parametrize(
    "operation",
    [
        Operation("mount_device", _noop, point="mount_device", mutating=True),
        Operation("sneaky", _noop, point="console_status", mutating=True),
        Operation("ungated", _noop),
        Operation("elsewhere", _noop, point="get_properties"),
    ],
    ids=lambda op: op.name,
)
def test_dispatcher_refuses_anything_but_gated_read_only_console_ops(tmp_path, operation):
    console = ConsoleServer(new_agent(tmp_path), [])
    with pytest.raises(Exception, match="must be read-only and gated at a console_ point"):
        ConsoleDispatcher(console, [operation])
