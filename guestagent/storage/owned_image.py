"""A layer image copied into memory the agent owns, so what was verified is what gets mounted.

Without device-mapper nothing checks a block when it is read, so the agent must not verify one
file and mount another, or the same file after the host rewrote it. `take_image` opens the
host's path once (O_NOFOLLOW, non-blocking so a FIFO cannot hang it), accepts only a regular
file under a configured layer directory (checked on the opened fd, not the name), copies it into
a memfd and seals that memfd against every write, growth and shrink. Verification reads the
memfd; the loop device is attached to the same memfd. The host's file is never opened again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError, NotFoundError
from guestagent.records import record

__all__ = ["SEALS", "OwnedImage", "take_image"]

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
MAX_IMAGE_BYTES = 16 << 30
_COPY_CHUNK = 64 << 20


@record(mutable=True)
class OwnedImage:
    """A sealed memfd holding an image; `path` lets helpers (and hash workers) read it."""

    fd: int
    source: str  # the host's path, for messages only: never opened again
    size: int

    @property
    def path(self) -> str:
        # Through /proc/<pid> (not /proc/self) so exec'd hash workers open this same memfd.
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OwnedImage:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _inside(path: str, dirs: list[str]) -> bool:
    return any(os.path.commonpath([path, d]) == d for d in dirs)


def _open_regular(source: str, layer_dirs: list[str]) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(source, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: the last component is a symlink
            raise InvalidArgumentError(
                f"layer source {source!r} is a symlink; name the image file itself",
                details={"source": source},
            ) from None
        raise NotFoundError(f"layer source {source!r}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a block device" if stat.S_ISBLK(mode) else "not a regular file"
            raise InvalidArgumentError(
                f"layer source {source!r} is {kind}; verified-loop mode takes only image files",
                details={"source": source},
            )
        opened = os.readlink(f"/proc/self/fd/{fd}")  # where the fd really is, symlinks resolved
        if not _inside(opened, layer_dirs):
            raise InvalidArgumentError(
                f"layer source {source!r} must be a file under "
                f"{layer_dirs or 'a configured --layer-dir'}",
                details={"source": source},
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy(src: int, dst: int, source: str) -> int:
    offset = 0
    while True:
        sent = os.sendfile(dst, src, offset, _COPY_CHUNK)
        if sent == 0:
            return offset
        offset += sent
        if offset > MAX_IMAGE_BYTES:
            raise InvalidArgumentError(
                f"layer source {source!r} is larger than {MAX_IMAGE_BYTES} bytes"
            )


def take_image(source: str, layer_dirs: list[str], name: str = "ga-layer") -> OwnedImage:
    """Copy the regular file `source` (under one of `layer_dirs`) into a sealed memfd."""
    src = _open_regular(source, layer_dirs)
    memfd = -1
    try:
        memfd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        size = _copy(src, memfd, source)
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, SEALS)
    except OSError as exc:
        if memfd >= 0:
            os.close(memfd)
        raise AgentError(
            f"cannot copy layer {source!r} into guest memory: {exc}", code=ErrorCode.STORAGE
        ) from exc
    except BaseException:
        if memfd >= 0:
            os.close(memfd)
        raise
    finally:
        os.close(src)
    return OwnedImage(memfd, source, size)
