"""mount(2)/umount2(2) through libc, and the layer -> overlay -> scratch assembly with undo.

Every step registers its undo on a `StorageStack` (an ExitStack), so a failure midway unwinds
what was done, and `teardown` unmounts and detaches in reverse order. overlayfs wants
`lowerdir` TOP layer first; policies and `mount_overlay` inputs list the BASE layer first, so
the list is reversed here and only here.

Without device-mapper ("verified-loop" mode) a layer image is first copied into a sealed
memfd the agent owns (`owned_image`), its whole data verified there against its root, and the
loop device attached to that same memfd: nothing the host can still write is ever read.
dm-verity (every read checked by the kernel) is the mode for the guest.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from guestagent.containers import children
from guestagent.errors import (
    AgentError,
    ErrorCode,
    IntegrityError,
    InvalidArgumentError,
    TaintedError,
)
from guestagent.records import record
from guestagent.storage import loop
from guestagent.storage.dm import DmClient

if TYPE_CHECKING:  # loaded with the first layer or scratch disk: the agent starts without them
    from guestagent.storage.owned_image import OwnedImage
    from guestagent.storage.scratch import ScratchDisk
    from guestagent.storage.verity_device import VerityInfo

__all__ = [
    "MS_NODEV",
    "MS_NOSUID",
    "MS_RDONLY",
    "StorageStack",
    "mount",
    "mount_layer_dm",
    "mount_layer_verified",
    "mount_overlay",
    "mount_scratch_crypt",
    "mount_scratch_tmpfs",
    "overlay_options",
    "umount",
]

MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MNT_DETACH = 2
LAYER_FLAGS = MS_RDONLY | MS_NODEV | MS_NOSUID
_libc = ctypes.CDLL(None, use_errno=True)  # the libc already mapped: no ldconfig run


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode(),
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise AgentError(
            f"mount {fstype} {source} on {target} failed: {os.strerror(err)}",
            code=ErrorCode.STORAGE,
            details={"errno": err},
        )


def umount(target: str, *, detach: bool = False) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        raise AgentError(
            f"umount {target} failed: {os.strerror(err)}",
            code=ErrorCode.STORAGE,
            details={"errno": err},
        )


def _makedirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise AgentError(
            f"cannot create mount point {path}: {exc.strerror}", code=ErrorCode.STORAGE
        ) from exc


class StorageStack:
    """Undo log of storage steps; `teardown` unwinds them all, tainting on a failed undo."""

    def __init__(self) -> None:
        self._stack = ExitStack()

    def push(self, undo: Callable[..., object], *args: object) -> None:
        self._stack.callback(undo, *args)

    def absorb(self, other: StorageStack) -> None:
        """Take over another stack's undos (a finished sub-step joins the container's stack)."""
        self._stack.push(other._stack.pop_all())

    def teardown(self) -> None:
        try:
            self._stack.close()
        except AgentError as exc:
            raise TaintedError(f"teardown failed, guest state uncertain: {exc.message}") from exc
        except OSError as exc:
            raise TaintedError(f"teardown failed, guest state uncertain: {exc}") from exc

    def __enter__(self) -> StorageStack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.teardown()  # undo on failure; on success the caller keeps the stack


@record
class LayerMount:
    target: str
    device: str
    root_hash: str


def _mount_layer_device(device: str, target: str, stack: StorageStack, fstype: str) -> None:
    _makedirs(target)
    mount(device, target, fstype, LAYER_FLAGS)
    stack.push(umount, target)


def mount_layer_verified(
    image: OwnedImage, target: str, info: VerityInfo, stack: StorageStack, fstype: str = "erofs"
) -> LayerMount:
    """No-dm mode: verify the sealed copy against `info` (the agent's root), loop it read-only.

    The loop device is attached to the very memfd that was verified; it holds its own
    reference, so the caller may close `image` once this returns.
    """
    from guestagent.storage.verity import verify

    verify(image.path, image.path, bytes.fromhex(info.root_hash), info.params)
    with StorageStack() as local:
        device = loop.attach_fd(
            image.fd, f"{image.source}", read_only=True, sizelimit=info.params.data_size
        )
        local.push(loop.detach, device)
        try:
            _mount_layer_device(device.path, target, local, fstype)
        finally:
            device.close_fd()  # the mount now holds the loop device; AUTOCLEAR frees it later
        stack.absorb(local)
    return LayerMount(target, device.path, info.root_hash)


def mount_layer_dm(
    device: str,
    target: str,
    info: VerityInfo,
    stack: StorageStack,
    dm: DmClient,
    name: str,
    on_corruption: str = "error",
    fstype: str = "erofs",
) -> LayerMount:
    """Guest mode: map `device` (appended tree) as dm-verity with the agent's root, mount ro."""
    with StorageStack() as local:
        mapped = dm.open_verity(name, device, device, info.params, info.root_hash, on_corruption)
        local.push(dm.remove, name)
        try:
            _mount_layer_device(mapped, target, local, fstype)
        except AgentError as exc:
            if exc.details.get("errno") != errno.EIO:
                raise
            # dm-verity answers a block that fails its hash with EIO: say what it means.
            raise IntegrityError(
                f"layer {device} failed dm-verity while mounting: its data does not match "
                f"the tree of root {info.root_hash}",
                details={"device": device, "root_hash": info.root_hash},
            ) from exc
        stack.absorb(local)
    return LayerMount(target, mapped, info.root_hash)


def overlay_options(layers_base_first: list[str], upper: str, work: str) -> str:
    if not layers_base_first:
        raise InvalidArgumentError("overlay needs at least one layer")
    for path in [*layers_base_first, upper, work]:
        if any(c in path for c in ":,\\") or not os.path.isabs(path):
            raise InvalidArgumentError(f"overlay path {path!r} must be absolute, without : , \\")
    lower = ":".join(reversed(layers_base_first))  # overlayfs: top-most lower layer first
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def mount_overlay(
    layers_base_first: list[str], scratch: str, target: str, stack: StorageStack, flags: int = 0
) -> str:
    """The container rootfs: layers (base first) under a writable upper on `scratch`."""
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    options = overlay_options(layers_base_first, upper, work)
    for path in (upper, work, target):
        _makedirs(path)
    mount("overlay", target, "overlay", flags, options)
    stack.push(umount, target)
    return target


def mount_scratch_tmpfs(target: str, stack: StorageStack, size: str = "50%") -> str:
    _makedirs(target)
    mount("tmpfs", target, "tmpfs", MS_NODEV | MS_NOSUID, f"mode=0700,size={size}")
    stack.push(umount, target)
    return target


def mount_scratch_crypt(
    disk: ScratchDisk, target: str, stack: StorageStack, dm: DmClient, name: str
) -> str:
    """Scratch on dm-crypt over dm-integrity, keys made here and never stored (scratch.py)."""
    from guestagent.storage.scratch import open_integrity

    with StorageStack() as local:
        integrity, sectors = open_integrity(disk, dm, f"{name}-i")
        local.push(dm.remove, f"{name}-i")
        key = secrets.token_bytes(64).hex()
        whole = sectors - sectors % 8  # whole 4 KiB crypt sectors
        mapped = dm.open_crypt(name, integrity, whole, key, sector_size=4096)
        local.push(dm.remove, name)
        _zero(mapped)  # every tag written once: unwritten sectors would read as EIO
        _mkfs_ext4(mapped)
        _makedirs(target)
        mount(mapped, target, "ext4", MS_NODEV | MS_NOSUID)
        local.push(umount, target)
        stack.absorb(local)
    return target


def _zero(device: str) -> None:
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        chunk = bytes(1 << 20)
        for offset in range(0, size, len(chunk)):
            os.pwrite(fd, chunk[: size - offset], offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkfs_ext4(device: str) -> None:
    argv = ["mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-O", "^has_journal", device]
    result = children.run(argv, timeout=600)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()[-300:]
        raise AgentError(f"mkfs.ext4 on scratch failed: {stderr}", code=ErrorCode.STORAGE)
