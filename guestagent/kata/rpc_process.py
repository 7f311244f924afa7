"""Processes and their stdio: ExecProcess, SignalProcess, WaitProcess, WriteStdin,
CloseStdin, ReadStdout, ReadStderr, TtyWinResize.

Kata names a container's init process by exec_id == container_id (or empty); the native
operations name it exec_id None. Each RPC is one native operation: exec_process (point
exec_in_container), signal_process (signal_container_process), the stdio and wait operations
(container_state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from guestagent.errors import InvalidArgumentError
from guestagent.kata.oci_json import process_to_json
from guestagent.kata.pb import agent_pb2
from guestagent.kata.registry import Rpc
from guestagent.kata.strict import allow_only

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

SERVICE = "grpc.AgentService"
DEFAULT_READ = 65536
MAX_READ = 1 << 20


def exec_ref(container_id: str, exec_id: str) -> str | None:
    """Kata's exec id -> the native one (None: the container's init process)."""
    return None if exec_id in ("", container_id) else exec_id


async def exec_process(
    context: KataContext, request: agent_pb2.ExecProcessRequest
) -> empty_pb2.Empty:
    allow_only(request, {"container_id", "exec_id", "process"})
    if not request.exec_id or request.exec_id == request.container_id:
        raise InvalidArgumentError("ExecProcessRequest.exec_id must name a new process")
    await context.native(
        "exec_process",
        {
            "container_id": request.container_id,
            "exec_id": request.exec_id,
            "process": process_to_json(request.process),
            "stdin": True,
        },
    )
    return empty_pb2.Empty()


async def signal_process(
    context: KataContext, request: agent_pb2.SignalProcessRequest
) -> empty_pb2.Empty:
    await context.native(
        "signal_process",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
            "signal": request.signal,
        },
    )
    return empty_pb2.Empty()


async def wait_process(
    context: KataContext, request: agent_pb2.WaitProcessRequest
) -> agent_pb2.WaitProcessResponse:
    result = await context.native(
        "wait_process",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
        },
    )
    return agent_pb2.WaitProcessResponse(status=result["exit_code"])


async def _read(
    context: KataContext, request: agent_pb2.ReadStreamRequest, stream: str
) -> agent_pb2.ReadStreamResponse:
    """Blocks until there is output; empty data is end of stream (what the shim expects)."""
    result = await context.native(
        "read_output",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
            "stream": stream,
            "max_bytes": min(request.len or DEFAULT_READ, MAX_READ),
        },
    )
    return agent_pb2.ReadStreamResponse(data=result["data"])


async def read_stdout(
    context: KataContext, request: agent_pb2.ReadStreamRequest
) -> agent_pb2.ReadStreamResponse:
    return await _read(context, request, "stdout")


async def read_stderr(
    context: KataContext, request: agent_pb2.ReadStreamRequest
) -> agent_pb2.ReadStreamResponse:
    return await _read(context, request, "stderr")


async def write_stdin(
    context: KataContext, request: agent_pb2.WriteStreamRequest
) -> agent_pb2.WriteStreamResponse:
    result = await context.native(
        "write_stdin",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
            "data": request.data,
        },
    )
    return agent_pb2.WriteStreamResponse(len=result["written"])


async def close_stdin(
    context: KataContext, request: agent_pb2.CloseStdinRequest
) -> empty_pb2.Empty:
    await context.native(
        "write_stdin",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
            "close": True,
        },
    )
    return empty_pb2.Empty()


async def tty_win_resize(
    context: KataContext, request: agent_pb2.TtyWinResizeRequest
) -> empty_pb2.Empty:
    await context.native(
        "resize_terminal",
        {
            "container_id": request.container_id,
            "exec_id": exec_ref(request.container_id, request.exec_id),
            "rows": request.row,
            "cols": request.column,
        },
    )
    return empty_pb2.Empty()


RPCS = [
    Rpc(SERVICE, "ExecProcess", agent_pb2.ExecProcessRequest, empty_pb2.Empty, exec_process,
        mutating=True),
    Rpc(SERVICE, "SignalProcess", agent_pb2.SignalProcessRequest, empty_pb2.Empty,
        signal_process, mutating=True),
    Rpc(SERVICE, "WaitProcess", agent_pb2.WaitProcessRequest, agent_pb2.WaitProcessResponse,
        wait_process),
    Rpc(SERVICE, "ReadStdout", agent_pb2.ReadStreamRequest, agent_pb2.ReadStreamResponse,
        read_stdout),
    Rpc(SERVICE, "ReadStderr", agent_pb2.ReadStreamRequest, agent_pb2.ReadStreamResponse,
        read_stderr),
    Rpc(SERVICE, "WriteStdin", agent_pb2.WriteStreamRequest, agent_pb2.WriteStreamResponse,
        write_stdin),
    Rpc(SERVICE, "CloseStdin", agent_pb2.CloseStdinRequest, empty_pb2.Empty, close_stdin),
    Rpc(SERVICE, "TtyWinResize", agent_pb2.TtyWinResizeRequest, empty_pb2.Empty,
        tty_win_resize),
]  # fmt: skip
