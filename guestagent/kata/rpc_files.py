"""CopyFile: the shim's hostname, hosts and resolv.conf files (in offset-ordered chunks),
and the directories and symlinks of projected volumes, each with its owner.

Chunks are gathered here (bounded: the native copy limit) and the whole file is written by
one native copy_file (point copy_file: the policy rules the destination, mode, size, kind,
owner and a symlink's target), so a file is either all there or not at all. As in Kata's
agent, a symlink's target is the request's data (one message); a directory carries none.
A uid or gid of -1 (unset) is root's.
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
_KINDS = (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)


async def copy_file(context: KataContext, request: agent_pb2.CopyFileRequest) -> empty_pb2.Empty:
    allow_only(
        request,
        {"path", "file_size", "file_mode", "dir_mode", "uid", "gid", "offset", "data"},
    )
    kind = stat.S_IFMT(request.file_mode)
    if kind not in _KINDS:
        raise InvalidArgumentError(
            f"CopyFile of {request.path!r}: file_mode {oct(request.file_mode)} is not a "
            "regular file, directory or symlink"
        )
    common = {"uid": max(request.uid, 0), "gid": max(request.gid, 0)}
    mode = request.file_mode & 0o7777
    # Parent directories the copy makes (proto3's 0: unset, the agent's 0755).
    common["dir_mode"] = request.dir_mode & 0o7777 or 0o755
    if kind in (stat.S_IFDIR, stat.S_IFLNK):
        if request.offset or len(request.data) != request.file_size:
            raise InvalidArgumentError(
                f"CopyFile of {request.path!r}: a directory or symlink comes in one message "
                "(offset 0, file_size the length of data)"
            )
        args: dict[str, object] = {"destination": request.path, "data": b"", "mode": mode, **common}
        if kind == stat.S_IFDIR:
            if request.data:
                raise InvalidArgumentError(f"CopyFile of {request.path!r}: a directory has no data")
            args["kind"] = "directory"
        else:
            try:
                args.update(kind="symlink", target=request.data.decode())
            except UnicodeDecodeError:
                raise InvalidArgumentError(
                    f"CopyFile of {request.path!r}: the symlink target is not UTF-8"
                ) from None
        await context.native("copy_file", args)
        return empty_pb2.Empty()
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
        {"destination": request.path, "data": bytes(buffer), "mode": mode, **common},
    )
    return empty_pb2.Empty()


RPCS = [
    Rpc(SERVICE, "CopyFile", agent_pb2.CopyFileRequest, empty_pb2.Empty, copy_file,
        mutating=True),
]  # fmt: skip
