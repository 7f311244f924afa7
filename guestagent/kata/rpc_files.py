"""CopyFile: the shim's hostname, hosts and resolv.conf files, in offset-ordered chunks.

Chunks are gathered here (bounded: the native copy limit) and the whole file is written by
one native copy_file (point copy_file: the policy rules the destination, mode and size), so
a file is either all there or not at all. Directories are created by the file writes beneath
them; symlinks and owners other than root have no rule yet and are refused by name.
"""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from guestagent.errors import InvalidArgumentError
from guestagent.kata.pb import agent_pb2
from guestagent.kata.registry import Rpc
from guestagent.kata.strict import allow_only

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

SERVICE = "grpc.AgentService"
MAX_PENDING_FILES = 4
MAX_COPY = 16 << 20  # the native copy_file's data limit: a bigger file could never be written


async def copy_file(context: KataContext, request: agent_pb2.CopyFileRequest) -> empty_pb2.Empty:
    allow_only(
        request,
        {"path", "file_size", "file_mode", "dir_mode", "uid", "gid", "offset", "data"},
    )
    kind = stat.S_IFMT(request.file_mode)
    if kind == stat.S_IFDIR:
        return empty_pb2.Empty()  # made, root-owned 0755, by the first file written inside
    if kind not in (0, stat.S_IFREG):
        raise InvalidArgumentError(
            f"CopyFile of {request.path!r}: only regular files and directories are copied "
            "(a symlink would let a mount follow a host-chosen target)"
        )
    if request.uid not in (0, -1) or request.gid not in (0, -1):
        raise InvalidArgumentError(
            f"CopyFile of {request.path!r}: owner {request.uid}:{request.gid} has no rule; "
            "copied files belong to root"
        )
    if not 0 <= request.file_size <= MAX_COPY:
        raise InvalidArgumentError(f"CopyFile.file_size must be 0..{MAX_COPY} bytes")
    pending = context.sandbox.copies
    buffer = pending.get(request.path, bytearray()) if request.offset else bytearray()
    if request.offset != len(buffer):
        pending.pop(request.path, None)
        raise InvalidArgumentError(
            f"CopyFile of {request.path!r}: chunk at offset {request.offset}, expected "
            f"{len(buffer)}; start again at offset 0"
        )
    buffer += request.data
    if len(buffer) > request.file_size:
        pending.pop(request.path, None)
        raise InvalidArgumentError(f"CopyFile of {request.path!r}: more data than file_size")
    if len(buffer) < request.file_size:
        if request.path not in pending and len(pending) >= MAX_PENDING_FILES:
            raise InvalidArgumentError("too many CopyFile transfers in progress")
        pending[request.path] = buffer
        return empty_pb2.Empty()
    pending.pop(request.path, None)
    await context.native(
        "copy_file",
        {"destination": request.path, "data": bytes(buffer), "mode": request.file_mode & 0o7777},
    )
    return empty_pb2.Empty()


RPCS = [
    Rpc(SERVICE, "CopyFile", agent_pb2.CopyFileRequest, empty_pb2.Empty, copy_file,
        mutating=True),
]  # fmt: skip
