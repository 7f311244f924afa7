"""Files the host copies into the guest's shared directory, written without following links.

Each path component is opened relative to its parent with O_NOFOLLOW, so neither `..` nor a
symlink planted by a container can move a write outside the shared root; the file is
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError

__all__ = ["write_shared_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


def _components(destination: str) -> list[str]:
    parts = [p for p in destination.split("/") if p]
    if not destination.startswith("/") or not parts or any(p in (".", "..") for p in parts):
        raise InvalidArgumentError(
            f"destination {destination!r} must be absolute, without '.' or '..'"
        )
    return parts


def write_shared_file(root: str, destination: str, data: bytes, mode: int) -> dict[str, Any]:
    """Write `data` at `root` + `destination` (creating directories); returns what it did."""
    parts = _components(destination)
    try:
        return _write(root, parts, data, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            why = "a path component is a symlink or not a directory; it is never followed"
        else:  # ENOSPC, EDQUOT, EROFS, ...: the effect failed, say which way
            why = exc.strerror or str(exc)
        raise AgentError(
            f"cannot write {destination!r} under the shared directory: {why}",
            code=ErrorCode.STORAGE,
            details={"errno": exc.errno},
        ) from None


def _write(root: str, parts: list[str], data: bytes, mode: int) -> dict[str, Any]:
    os.makedirs(root, mode=0o755, exist_ok=True)
    dir_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=dir_fd)
            child = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = child
        name, tmp = parts[-1], f".{parts[-1]}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode & 0o777,
            dir_fd=dir_fd,
        )
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return {"path": os.path.join(root, *parts), "size": len(data), "mode": oct(mode & 0o777)}
