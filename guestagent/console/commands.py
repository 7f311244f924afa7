"""The console's operation table: ten commands, each gated at `console_<name>`.

All read; `trace` also starts and stops recording the agent's decisions (what the policy
lists it for: the lines hold what the host sent, and leave the TEE through the console).

The policy's inspection points take an empty input (the command name is the point), so
`prepare` hands the gate `{}` whatever arguments the command has; a command's arguments only
shape what is read. Every effect reads through `host.view` (an `AgentView`) or the system
(psutil, netlink dumps) and returns plain data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guestagent.console import inspect_agent, inspect_system
from guestagent.protocol.schema import Field
from guestagent.rpc.operation import Call, Operation, Prepared

if TYPE_CHECKING:
    from guestagent.console.server import ConsoleServer

__all__ = ["COMMANDS", "DECISION_FILTERS", "MAX_DECISIONS", "console_operations"]

DECISION_FILTERS = ("all", "allowed", "denied")
MAX_DECISIONS = 1024


def _no_facts(host: ConsoleServer, args: dict[str, Any]) -> Prepared:
    return Prepared({})


def _exactly_64(value: bytes) -> str | None:
    return None if len(value) == 64 else f"must be 64 bytes, got {len(value)}"


def _one_of(choices: tuple[str, ...]):
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _between(low: int, high: int):
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be in {low}..{high}"

    return check


async def status(host: ConsoleServer, call: Call) -> Any:
    return await inspect_agent.status(host.view)


def policy(host: ConsoleServer, call: Call) -> Any:
    return inspect_agent.policy(host.view)


async def report(host: ConsoleServer, call: Call) -> Any:
    return await inspect_agent.report(host.view, call.args["report_data"])


def containers(host: ConsoleServer, call: Call) -> Any:
    return inspect_agent.containers(host.view)


async def processes(host: ConsoleServer, call: Call) -> Any:
    return await inspect_system.processes(host.view, call.args["pid"])


def mounts(host: ConsoleServer, call: Call) -> Any:
    return inspect_agent.mounts(host.view)


async def network(host: ConsoleServer, call: Call) -> Any:
    return await inspect_system.network()


def decisions(host: ConsoleServer, call: Call) -> Any:
    return inspect_agent.decisions(host.view, call.args["filter"], call.args["limit"])


TRACE_ACTIONS = ("start", "show", "stop")


def trace(host: ConsoleServer, call: Call) -> Any:
    """Record the agent's decisions from now on (start), read them (show), or end (stop).
    The lines are what `guestagent policy check --trace` replays."""
    recorder = host.view.request_trace
    action = call.args["action"]
    if action == "start":
        recorder.start_memory()
        return {"tracing": True, "lines": []}
    lines = recorder.stop_memory() if action == "stop" else recorder.memory()
    return {"tracing": action != "stop" and recorder.recording_to_memory, "lines": lines}


def metrics(host: ConsoleServer, call: Call) -> Any:
    return inspect_system.metrics(host.view, host.counters())


def _command(name: str, effect: Any, summary: str, **args: Field) -> Operation:
    return Operation(
        name, effect, args=args, point=f"console_{name}", prepare=_no_facts, summary=summary
    )


def console_operations() -> list[Operation]:
    return [
        _command("status", status, "version, uptime, SNP backend, policy digest vs HOST_DATA"),
        _command("policy", policy, "audit summary of the adopted policy"),
        _command(
            "report",
            report,
            "a fresh attestation report over report_data, decoded",
            report_data=Field((bytes,), default=bytes(64), check=_exactly_64),
        ),
        _command("containers", containers, "containers and the policy entries they match"),
        _command(
            "processes",
            processes,
            "process tree with cpu and memory",
            pid=Field((int, type(None)), default=None, check=_positive_or_none),
        ),
        _command("mounts", mounts, "verity layers, root hashes, and the entries allowing them"),
        _command("network", network, "interfaces, addresses and routes"),
        _command(
            "decisions",
            decisions,
            "recent policy decisions",
            filter=Field((str,), default="all", check=_one_of(DECISION_FILTERS)),
            limit=Field((int,), default=50, check=_between(1, MAX_DECISIONS)),
        ),
        _command("metrics", metrics, "request, decision and connection counters, uptime, rss"),
        _command(
            "trace",
            trace,
            "record decisions' requests (start), print them as JSON lines (show, stop)",
            action=Field((str,), default="show", check=_one_of(TRACE_ACTIONS)),
        ),
    ]


def _positive_or_none(value: int | None) -> str | None:
    return None if value is None or value > 0 else "must be a positive pid"


COMMANDS: tuple[str, ...] = tuple(op.name for op in console_operations())
