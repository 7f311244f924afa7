"""Container lifecycle and stdio: the host's OCI spec is read into facts, ruled on, rebuilt.

The runtime never sees the host's spec: `build_bundle_config` writes config.json from the
facts the decision saw and the agent's own constants (rootfs is always the overlay the agent
assembled; env, capabilities and umask come from the policy's decision). Streams the policy
does not grant are not opened at all.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from guestagent.containers.process import OutputStream, StdioOptions
from guestagent.errors import AgentError, ErrorCode, InvalidStateError
from guestagent.protocol.schema import Field, identifier, optional_identifier
from guestagent.rpc.operation import Call, Operation, Prepared
from guestagent.runtime_defaults import SHARED_NAMESPACES

if TYPE_CHECKING:
    from guestagent.containers.pod_namespaces import JoinedNamespaces
    from guestagent.server.agent import Agent

__all__ = ["OPERATIONS"]

MAX_READ = 1 << 20


def _stdio(decision_data: Any, stdin: bool) -> StdioOptions:
    allowed = bool(decision_data.get("allow_stdio", False))
    return StdioOptions(stdin=stdin and allowed, stdout=allowed, stderr=allowed)


# The spec reader, the bundle writer and the exec builders load with the first request that
# needs them: the agent answers the handshake without them.
def prepare_create(agent: Agent, args: dict[str, Any]) -> Prepared:
    from guestagent.containers.spec import read_create

    rootfs = agent.storage.rootfs_target(args["container_id"])
    facts, seccomp = read_create(args["container_id"], args["spec"], rootfs, args["joins"])
    return Prepared(facts, seccomp)


async def create_container(agent: Agent, call: Call) -> dict[str, Any]:
    from guestagent.containers.pod_namespaces import open_joined

    joined = open_joined(agent.require_containers(), call.facts["joins"])
    try:
        return await _create(agent, call, joined)
    finally:
        joined.close()


async def _create(agent: Agent, call: Call, joined: JoinedNamespaces) -> dict[str, Any]:
    from guestagent.attestation.hub import attestation_entry
    from guestagent.containers.bundle import build_bundle_config

    manager = agent.require_containers()
    cid = call.args["container_id"]
    assert call.decision is not None
    joined.check_hostname(call.facts)
    config = build_bundle_config(
        call.facts,
        call.decision.data,
        cgroups_path=manager.cgroups_path(cid),
        seccomp=call.context,
        joined=joined.paths,
    )
    entry = attestation_entry(call.decision.data)
    if entry is not None:
        hub = agent.attestation_hub()
        if hub is None:
            raise AgentError(
                "the policy grants this container the attestation socket, but there is no "
                "SEV-SNP backend",
                code=ErrorCode.SNP_UNAVAILABLE,
            )
        config["mounts"].append(await hub.open(cid, entry))
    try:
        state = await manager.create(cid, config, _stdio(call.decision.data, call.args["stdin"]))
        try:
            joined.verify(state["pid"])
        except BaseException:
            await manager.delete(cid)
            raise
    except BaseException:
        if agent.attestation is not None:
            await agent.attestation.close(cid)
        raise
    return {**state, "policy_containers": list(call.decision.data.get("candidates", []))}


async def start_container(agent: Agent, call: Call) -> dict[str, Any]:
    return await agent.require_containers().start(call.args["container_id"])


def prepare_exec(agent: Agent, args: dict[str, Any]) -> Prepared:
    from guestagent.containers.exec_spec import exec_input

    return Prepared(exec_input(args["container_id"], args["process"]))


async def exec_process(agent: Agent, call: Call) -> dict[str, Any]:
    from guestagent.containers.exec_spec import build_exec_process

    assert call.decision is not None
    process = build_exec_process(call.args["process"], call.decision.data)
    exec_id = await agent.require_containers().exec(
        call.args["container_id"],
        process,
        _stdio(call.decision.data, call.args["stdin"]),
        exec_id=call.args["exec_id"],
    )
    return {"container_id": call.args["container_id"], "exec_id": exec_id}


def prepare_signal(agent: Agent, args: dict[str, Any]) -> Prepared:
    process = agent.require_containers().process(args["container_id"], args["exec_id"])
    return Prepared(
        {
            "container_id": args["container_id"],
            "signal": args["signal"],
            "is_init": args["exec_id"] is None,
            "argv": list(process.argv),
        }
    )


async def signal_process(agent: Agent, call: Call) -> dict[str, Any]:
    await agent.require_containers().signal(
        call.args["container_id"], call.args["signal"], call.args["exec_id"]
    )
    return {
        "container_id": call.args["container_id"],
        "exec_id": call.args["exec_id"],
        "signal": call.args["signal"],
    }


def prepare_state(agent: Agent, args: dict[str, Any]) -> Prepared:
    return Prepared({"container_id": args.get("container_id")})


async def wait_process(agent: Agent, call: Call) -> dict[str, Any]:
    code = await agent.require_containers().wait(
        call.args["container_id"], call.args["exec_id"], timeout=call.args["timeout"]
    )
    return {"exit_code": code}


async def read_output(agent: Agent, call: Call) -> dict[str, Any]:
    io = agent.require_containers().io(call.args["container_id"], call.args["exec_id"])
    stream: OutputStream | None = io.stdout if call.args["stream"] == "stdout" else io.stderr
    if io.terminal:
        stream = io.stdout  # a terminal has one output stream
    if stream is None:
        raise InvalidStateError(
            f"{call.args['stream']} is not available: the policy does not grant stdio access"
        )
    try:
        data = await asyncio.wait_for(stream.read(call.args["max_bytes"]), call.args["timeout"])
    except TimeoutError:
        data = b""
    return {"data": data, "eof": stream.eof.is_set() and not stream.buffered()}


async def write_stdin(agent: Agent, call: Call) -> dict[str, Any]:
    io = agent.require_containers().io(call.args["container_id"], call.args["exec_id"])
    if io.stdin is None:
        raise InvalidStateError("stdin is not open for this process")
    written = await io.stdin.write(call.args["data"]) if call.args["data"] else 0
    if call.args["close"]:
        io.stdin.close()
    return {"written": written}


def resize_terminal(agent: Agent, call: Call) -> dict[str, Any]:
    io = agent.require_containers().io(call.args["container_id"], call.args["exec_id"])
    io.resize(call.args["rows"], call.args["cols"])
    return {"rows": call.args["rows"], "cols": call.args["cols"]}


async def delete_container(agent: Agent, call: Call) -> dict[str, Any]:
    await agent.require_containers().delete(call.args["container_id"])
    if agent.attestation is not None:
        await agent.attestation.close(call.args["container_id"])
    return {"container_id": call.args["container_id"]}


def container_state(agent: Agent, call: Call) -> dict[str, Any]:
    return agent.require_containers().state(call.args["container_id"])


async def wait_oom_event(agent: Agent, call: Call) -> dict[str, Any]:
    """The next container the kernel's OOM killer hit (None when `timeout` passes first)."""
    manager = agent.require_containers()

    def containers() -> list[tuple[str, str]]:
        return [(c["container_id"], c["cgroups_path"]) for c in manager.list()]

    return {"container_id": await agent.oom.next_event(containers, call.args["timeout"])}


def list_containers(agent: Agent, call: Call) -> dict[str, Any]:
    return {"containers": agent.require_containers().list()}


def _joins_check(value: dict[str, Any] | None) -> str | None:
    for ns, owner in (value or {}).items():
        if ns not in SHARED_NAMESPACES:
            return f"key {ns!r}: only {', '.join(SHARED_NAMESPACES)} namespaces are joined"
        if not isinstance(owner, str) or identifier().check(owner):
            return f"{ns}: must be the id of a container of this agent"
    return None


def _positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else "must be positive"


def container_key(args: dict[str, Any]) -> tuple[str, ...]:
    """Requests about one container run one after another (see rpc/resources.py)."""
    return (f"container:{args['container_id']}",)


def _create_keys(args: dict[str, Any]) -> tuple[str, ...]:
    """The container, and those whose namespaces it joins: none of them may change (be
    deleted, signalled, narrowed) between the decision and the runtime's create."""
    joined = (f"container:{owner}" for owner in (args["joins"] or {}).values())
    return (*container_key(args), *joined)


# Each decides and reserves under the mutation lock, then waits on the runtime without it.
LIFECYCLE = {"mutating": True, "reserves": True, "keys": container_key}
CREATE = {**LIFECYCLE, "keys": _create_keys}
CID = {"container_id": identifier()}
PROCESS_REF = {**CID, "exec_id": optional_identifier()}
TIMEOUT = Field((int, float, type(None)), default=None, check=_positive)
STATE = {"point": "container_state", "prepare": prepare_state}

OPERATIONS = [
    Operation(
        "create_container",
        create_container,
        point="create_container",
        prepare=prepare_create,
        **CREATE,
        args={
            **CID,
            "spec": Field((dict,)),
            "stdin": Field((bool,), default=False),
            "joins": Field((dict, type(None)), default=None, check=_joins_check),
        },
        summary="create a container from an OCI spec on its verified overlay, joining the "
        "namespaces of the pod's containers the policy names",
    ),
    Operation("start_container", start_container, point="start_container", **LIFECYCLE, args=CID),
    Operation(
        "exec_process",
        exec_process,
        point="exec_in_container",
        prepare=prepare_exec,
        **LIFECYCLE,
        args={**PROCESS_REF, "process": Field((dict,)), "stdin": Field((bool,), default=False)},
    ),
    Operation(
        "signal_process",
        signal_process,
        point="signal_container_process",
        prepare=prepare_signal,
        **LIFECYCLE,
        args={
            **PROCESS_REF,
            "signal": Field(
                (int,), check=lambda s: None if 0 < s < 65 else "must be a signal number 1-64"
            ),
        },
    ),
    Operation(
        "delete_container", delete_container, point="shutdown_container", **LIFECYCLE, args=CID
    ),
    Operation("wait_process", wait_process, **STATE, args={**PROCESS_REF, "timeout": TIMEOUT}),
    Operation(
        "read_output",
        read_output,
        **STATE,
        args={
            **PROCESS_REF,
            "stream": Field(
                (str,),
                default="stdout",
                check=lambda s: None if s in ("stdout", "stderr") else "must be stdout or stderr",
            ),
            "max_bytes": Field(
                (int,),
                default=65536,
                check=lambda n: None if 0 < n <= MAX_READ else f"must be 1..{MAX_READ}",
            ),
            "timeout": TIMEOUT,
        },
    ),
    Operation(
        "write_stdin",
        write_stdin,
        **STATE,
        args={
            **PROCESS_REF,
            "data": Field((bytes,), default=b"", max_len=MAX_READ),
            "close": Field((bool,), default=False),
        },
    ),
    Operation(
        "resize_terminal",
        resize_terminal,
        **STATE,
        args={**PROCESS_REF, "rows": Field((int,)), "cols": Field((int,))},
    ),
    Operation("container_state", container_state, **STATE, args=CID),
    Operation("list_containers", list_containers, **STATE),
    Operation(
        "wait_oom_event",
        wait_oom_event,
        **STATE,
        args={"timeout": TIMEOUT},
        summary="wait for a container's OOM kill (cgroup oom_kill counter)",
    ),
]
