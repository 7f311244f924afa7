"""Guest-wide operations: properties, stack and log dumps, file copies, external processes,
and delivering the policy itself."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import TYPE_CHECKING, Any

from guestagent.containers import children
from guestagent.containers.stats import agent_health
from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError
from guestagent.protocol.schema import Field, identifier, optional_identifier
from guestagent.rpc.operation import Call, Operation, Prepared
from guestagent.storage.shared_files import SharedEntry, write_shared_file

if TYPE_CHECKING:
    from guestagent.server.agent import Agent

__all__ = ["OPERATIONS"]

MAX_COPY = 16 << 20
COPY_KINDS = ("file", "directory", "symlink")
MAX_CAPTURE = 1 << 20


async def set_policy(agent: Agent, call: Call) -> dict[str, Any]:
    """Ungated: its gate is HOST_DATA itself (the digest must match the signed report)."""
    async with agent.mutation_lock:
        return await asyncio.to_thread(agent.adopt_policy, call.args["policy"], "set_policy")


def stats(agent: Agent, call: Call) -> dict[str, Any]:
    cid = call.args["container_id"]
    if cid is not None:
        return agent.require_containers().stats(cid)
    health = agent_health()  # process start (wall clock); started_at is monotonic
    health["containers"] = len(agent.containers.list()) if agent.containers else 0
    return health


def dump_stacks(agent: Agent, call: Call) -> dict[str, Any]:
    tasks = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=20)
        tasks.append(
            {
                "name": task.get_name(),
                "stack": "".join(traceback.format_list(traceback.extract_stack(frames[-1])))
                if frames
                else "",
            }
        )
    threads = {
        str(ident): "".join(traceback.format_stack(frame, limit=20))
        for ident, frame in sys._current_frames().items()
    }
    return {"tasks": tasks, "threads": threads}


def get_logs(agent: Agent, call: Call) -> dict[str, Any]:
    return {"entries": list(agent.recent_logs)[-call.args["limit"] :]}


def prepare_copy(agent: Agent, args: dict[str, Any]) -> Prepared:
    kind, target = args["kind"], args["target"]
    if (kind == "symlink") != (target is not None) or (kind != "file" and args["data"]):
        raise InvalidArgumentError(
            f"copy_file of kind {kind!r}: a symlink has a target and no data, a directory "
            "neither, a file no target",
            details={"field": "target" if target is not None else "data"},
        )
    return Prepared(
        {
            "destination": args["destination"],
            "mode": args["mode"],
            "dir_mode": args["dir_mode"],
            "size": len(args["data"]) if target is None else len(target.encode()),
            "kind": kind,
            "target": target or "",
            "uid": args["uid"],
            "gid": args["gid"],
        }
    )


async def copy_file(agent: Agent, call: Call) -> dict[str, Any]:
    root = str(agent.state_dir / "shared")
    args = call.args
    entry = SharedEntry(
        args["kind"], args["mode"], args["uid"], args["gid"], args["target"], args["dir_mode"]
    )
    # Up to 16 MiB written and fsynced: in a thread, never on the event loop.
    return await asyncio.to_thread(
        write_shared_file, root, args["destination"], args["data"], entry
    )


def prepare_sandbox(agent: Agent, args: dict[str, Any]) -> Prepared:
    return Prepared(dict(args))


def create_sandbox(agent: Agent, call: Call) -> dict[str, Any]:
    """Ruled, logged, and nothing more: a pod's containers are each ruled when created."""
    return dict(call.args)


async def exec_external(agent: Agent, call: Call) -> dict[str, Any]:
    """A process in the guest, outside any container: only what the policy lists.

    The policy rules on it without recording it, so it runs without the mutation lock: a
    process that runs for an hour stalls no mount or container operation.
    """
    assert call.decision is not None
    allow_stdio = bool(call.decision.data.get("allow_stdio", False))
    args = call.args
    env = dict(item.partition("=")[::2] for item in args["env"])
    try:
        # In a worker thread, through the agent's one reaper (never asyncio's child watchers).
        child = await asyncio.to_thread(
            children.start, args["argv"], env=env, cwd=args["working_dir"]
        )
    except OSError as exc:
        raise AgentError(
            f"cannot run {args['argv'][0]}: {exc.strerror}", code=ErrorCode.RUNTIME
        ) from exc
    try:
        done = await asyncio.to_thread(
            children.complete, child, timeout=args["timeout"], limit=MAX_CAPTURE
        )
    except asyncio.CancelledError:
        child.kill()  # stopped at shutdown: the worker thread sees EOF and ends; no process left
        raise
    if done.timed_out:
        raise AgentError(
            f"{args['argv'][0]} did not finish within {args['timeout']} s", code=ErrorCode.TIMEOUT
        )
    out, err = done.stdout, done.stderr
    result: dict[str, Any] = {"exit_code": done.returncode}
    if allow_stdio:
        result.update(stdout=out[:MAX_CAPTURE], stderr=err[:MAX_CAPTURE])
    return result


def _mode(value: int) -> str | None:
    return None if 0 <= value <= 0o7777 else "must be a file mode (0..0o7777)"


def _kind(value: str) -> str | None:
    return (
        None if value in ("file", "directory", "symlink") else "must be file, directory or symlink"
    )


def _owner(value: int) -> str | None:
    return None if 0 <= value < 2**32 - 1 else "must be a uid or gid (0..2**32-2)"


def _argv(value: list[str]) -> str | None:
    return None if value and value[0] else "must not be empty"


OPERATIONS = [
    Operation(
        "set_policy",
        set_policy,
        args={"policy": Field((bytes,), max_len=4 << 20)},
        summary="deliver the policy; adopted only if its digest equals HOST_DATA",
    ),
    Operation(
        "stats",
        stats,
        point="get_properties",
        prepare=lambda agent, args: Prepared({}),
        args={"container_id": optional_identifier()},
    ),
    Operation("dump_stacks", dump_stacks, point="dump_stacks"),
    Operation(
        "get_logs",
        get_logs,
        point="runtime_logging",
        prepare=lambda agent, args: Prepared({}),
        args={
            "limit": Field(
                (int,), default=200, check=lambda n: None if 0 < n <= 1000 else "must be 1..1000"
            )
        },
    ),
    Operation(
        "create_sandbox",
        create_sandbox,
        point="create_sandbox",
        prepare=prepare_sandbox,
        args={
            "sandbox_id": identifier(),
            "hostname": Field((str,), default="", max_len=64),
            "shared_pid_namespace": Field((bool,), default=False),
        },
        summary="rule a Kata pod's sandbox (id, hostname); changes nothing in the guest",
    ),
    Operation(
        "copy_file",
        copy_file,
        point="copy_file",
        prepare=prepare_copy,
        mutating=True,
        args={
            "destination": Field((str,), max_len=4096),
            "data": Field((bytes,), max_len=MAX_COPY),
            "mode": Field((int,), default=0o644, check=_mode),
            "dir_mode": Field((int,), default=0o755, check=_mode),
            "kind": Field((str,), default="file", check=_kind),
            "target": Field((str, type(None)), default=None, max_len=4096),
            "uid": Field((int,), default=0, check=_owner),
            "gid": Field((int,), default=0, check=_owner),
        },
    ),
    Operation(
        "exec_external",
        exec_external,
        point="exec_external",
        mutating=True,
        prepare=lambda agent, args: Prepared({k: args[k] for k in ("argv", "env", "working_dir")}),
        args={
            "argv": Field((list,), items=str, max_len=256, check=_argv),
            "env": Field((list,), default=[], items=str, max_len=256),
            "working_dir": Field((str,), default="/"),
            "timeout": Field(
                (int, float), default=60, check=lambda t: None if 0 < t <= 3600 else "1..3600 s"
            ),
        },
    ),
]
