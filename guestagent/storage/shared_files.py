"""Files the host copies into the guest's shared directory, written without following links.

Each path component is opened relative to its parent with O_NOFOLLOW, so neither `..` nor a
symlink planted by a container (or made by an earlier copy) can move a write outside the
shared root; a file or symlink is made under a temporary name, given its owner, and renamed
into place (replacing a symlink there, never following it). A directory is made or reused
(never through a link) and given its mode and owner. Symlink targets are the policy's
business (copy_file: relative, resolving to a path the host may copy to); nothing here
follows one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError
from guestagent.records import record

__all__ = ["SharedEntry", "write_shared_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


def _components(destination: str) -> list[str]:
    parts = [p for p in destination.split("/") if p]
    if not destination.startswith("/") or not parts or any(p in (".", "..") for p in parts):
        raise InvalidArgumentError(
            f"destination {destination!r} must be absolute, without '.' or '..'"
        )
    return parts


@record
class SharedEntry:
    """What to make: a file (the data), a directory or a symlink (to `target`), its owner."""

    kind: str = "file"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str | None = None
    dir_mode: int = 0o755  # of the parent directories made on the way


def write_shared_file(
    root: str, destination: str, data: bytes, entry: SharedEntry
) -> dict[str, Any]:
    """Make `entry` at `root` + `destination` (creating missing parent directories, the
    agent's, with `entry.dir_mode`); returns what it did."""
    parts = _components(destination)
    try:
        return _write(root, parts, data, entry)
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


def _subdir(dir_fd: int, name: str, mode: int) -> int:
    """The directory `name` in `dir_fd`, made (with `mode`, whatever the umask) if missing;
    never a symlink."""
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
        made = True
    except FileExistsError:
        made = False
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    if made:
        os.fchmod(fd, mode)
    return fd


def _write(root: str, parts: list[str], data: bytes, entry: SharedEntry) -> dict[str, Any]:
    os.makedirs(root, mode=0o755, exist_ok=True)
    dir_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    mode = entry.mode & 0o777
    try:
        for part in parts[:-1]:
            child = _subdir(dir_fd, part, entry.dir_mode & 0o777)
            os.close(dir_fd)
            dir_fd = child
        name, tmp = parts[-1], f".{parts[-1]}.tmp"
        if entry.kind == "directory":
            fd = _subdir(dir_fd, name, mode)
            try:
                os.fchmod(fd, mode)
                st = os.fstat(fd)
                if (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
                    os.fchown(fd, entry.uid, entry.gid)
            finally:
                os.close(fd)
            return {"path": os.path.join(root, *parts), "size": 0, "mode": oct(mode)}
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        if entry.kind == "symlink":
            assert entry.target is not None
            os.symlink(entry.target, tmp, dir_fd=dir_fd)
            if (entry.uid, entry.gid) != (os.geteuid(), os.getegid()):
                os.chown(tmp, entry.uid, entry.gid, dir_fd=dir_fd, follow_symlinks=False)
        else:
            _write_file(dir_fd, tmp, data, entry)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return {"path": os.path.join(root, *parts), "size": len(data), "mode": oct(mode)}


def _write_file(dir_fd: int, tmp: str, data: bytes, entry: SharedEntry) -> None:
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        entry.mode & 0o777,
        dir_fd=dir_fd,
    )
    with os.fdopen(fd, "wb") as out:
        if (entry.uid, entry.gid) != (os.geteuid(), os.getegid()):
            os.fchown(out.fileno(), entry.uid, entry.gid)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
