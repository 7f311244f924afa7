"""What the agent has mounted, and the effects that mount and unmount it.

Every layer, scratch and overlay owns a `StorageStack` of undos, so removing one undoes
exactly what it did, and `teardown_all` leaves nothing behind at shutdown. Paths are the
agent's own (under its state directory), never the host's: the host names layers and
containers by id only.

Two ways to open a layer, chosen once at start-up:
- `dm-verity` (the guest): the kernel checks every block read against the root hash the agent
  computed and the policy listed.
- `verified-loop` (development machines without device-mapper): the image is copied into a
  sealed memfd, verified whole in userspace, and that same memfd is loop-mounted read-only.
  Never chosen silently: `auto` warns, status and every mount reply name the mode, and an
  agent on real SEV-SNP refuses to start in it (see server/agent.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guestagent.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from guestagent.records import field, record
from guestagent.storage.dm import DmClient
from guestagent.storage.mounts import (
    StorageStack,
    mount_layer_dm,
    mount_layer_verified,
    mount_overlay,
    mount_scratch_crypt,
    mount_scratch_tmpfs,
)

if TYPE_CHECKING:  # loaded with the first layer or scratch disk: the agent starts without them
    from guestagent.storage.owned_image import OwnedImage
    from guestagent.storage.verity_device import VerityInfo

__all__ = [
    "DM_CONTROL",
    "LayerRecord",
    "LayerSource",
    "StorageRegistry",
    "device_tag",
    "storage_mode",
]

DM_CONTROL = "/dev/mapper/control"
DM_NAME_MAX = 127  # DM_NAME_LEN less the NUL
log = logging.getLogger("guestagent.storage")


def device_tag(storage_root: str) -> str:
    """Names every dm device and memfd of one state directory, so start-up reconciliation
    can find what an earlier run of this agent left (and never touch another agent's)."""
    return hashlib.sha256(os.path.realpath(storage_root).encode()).hexdigest()[:8]


def _device_name(tag: str, kind: str, ident: str) -> str:
    name = f"ga-{tag}-{kind}-{ident}"
    if len(name) <= DM_NAME_MAX:
        return name
    return f"ga-{tag}-{kind}-{hashlib.sha256(ident.encode()).hexdigest()[:32]}"


def storage_mode(requested: str = "auto", dm_control: str = DM_CONTROL) -> str:
    """`dm-verity` where the kernel has device-mapper, else `verified-loop` (with a warning)."""
    if requested == "auto":
        if os.path.exists(dm_control):
            return "dm-verity"
        log.warning(
            "no device-mapper: storage mode verified-loop (layers copied into guest memory and "
            "verified once; development only, refused on SEV-SNP hardware)",
            extra={"storage_mode": "verified-loop"},
        )
        return "verified-loop"
    if requested not in ("dm-verity", "verified-loop"):
        raise InvalidArgumentError(f"unknown storage mode {requested!r}")
    return requested


@record(mutable=True)
class LayerSource:
    """A layer as measured: the device dm-verity maps, or the sealed copy verified-loop mounts.

    Owned by the request until mounted; `close` releases the copy (the loop keeps its own
    reference once attached).
    """

    source: str  # the host's name for it, for messages and status
    info: VerityInfo
    device: str = ""  # dm-verity: the block device
    image: OwnedImage | None = None  # verified-loop: the sealed copy

    def close(self) -> None:
        if self.image is not None:
            self.image.close()


@record(mutable=True)
class LayerRecord:
    layer_id: str
    source: str
    target: str
    root_hash: str
    mode: str
    stack: StorageStack = field(repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "layer_id": self.layer_id,
            "source": self.source,
            "target": self.target,
            "root_hash": self.root_hash,
            "mode": self.mode,
        }


@record(mutable=True)
class ScratchRecord:
    container_id: str
    target: str
    encrypted: bool
    kind: str
    stack: StorageStack = field(repr=False)


@record(mutable=True)
class OverlayRecord:
    container_id: str
    target: str
    layer_ids: list[str]
    stack: StorageStack = field(repr=False)


class StorageRegistry:
    def __init__(
        self,
        state_dir: str,
        *,
        mode: str = "auto",
        layer_dirs: list[str] | None = None,
        scratch_devices: list[str] | None = None,
    ) -> None:
        self.root = Path(state_dir)
        self.mode = storage_mode(mode)
        self.layer_dirs = [os.path.realpath(d) for d in (layer_dirs or [])]
        self.tag = device_tag(state_dir)
        self.scratch_devices = list(scratch_devices or [])
        # Guest memory is encrypted only under SEV-SNP (or its simulator): the agent says.
        self.memory_encrypted = False
        self.layers: dict[str, LayerRecord] = {}
        self.scratch: dict[str, ScratchRecord] = {}
        self.overlays: dict[str, OverlayRecord] = {}
        self._dm: DmClient | None = DmClient() if self.mode == "dm-verity" else None
        self._lock = threading.Lock()  # effects run in worker threads

    # -- paths and names the agent owns ------------------------------------------------------
    def device_name(self, kind: str, ident: str) -> str:
        return _device_name(self.tag, kind, ident)

    def layer_target(self, layer_id: str) -> str:
        return str(self.root / "layers" / layer_id)

    def scratch_target(self, container_id: str) -> str:
        return str(self.root / "scratch" / container_id)

    def rootfs_target(self, container_id: str) -> str:
        return str(self.root / "rootfs" / container_id)

    # -- layers ------------------------------------------------------------------------------
    def open_layer(self, layer_id: str, source: str) -> LayerSource:
        """Take the layer the host names and compute its root (the host's word is never taken).

        dm-verity: a block device, whose every later read the kernel checks against that root.
        verified-loop: a regular file under a layer dir, copied into sealed memory first.
        """
        from guestagent.storage.owned_image import take_image
        from guestagent.storage.verity_device import root_from_device

        if self.mode == "verified-loop":
            image = take_image(source, self.layer_dirs, _device_name(self.tag, "layer", layer_id))
            try:
                return LayerSource(source, root_from_device(image.path), image=image)
            except BaseException:
                image.close()
                raise
        device = self._check_block_device(source)
        return LayerSource(source, root_from_device(device), device=device)

    def _check_block_device(self, source: str) -> str:
        real = os.path.realpath(source)
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            raise NotFoundError(f"layer source {source!r}: {exc.strerror}") from None
        if not stat.S_ISBLK(mode):
            raise InvalidArgumentError(
                f"layer source {source!r} must be a block device in dm-verity mode",
                details={"source": source},
            )
        return real

    def mount_layer(
        self, layer_id: str, layer: LayerSource, on_corruption: str = "error"
    ) -> LayerRecord:
        if layer_id in self.layers:
            raise AlreadyExistsError(f"layer {layer_id!r} is already mounted")
        target = self.layer_target(layer_id)
        stack = StorageStack()
        info = layer.info
        if self._dm is not None:
            mount_layer_dm(
                layer.device,
                target,
                info,
                stack,
                self._dm,
                self.device_name("layer", layer_id),
                on_corruption,
            )
        else:
            assert layer.image is not None
            mount_layer_verified(layer.image, target, info, stack)
        record = LayerRecord(layer_id, layer.source, target, info.root_hash, self.mode, stack)
        with self._lock:
            self.layers[layer_id] = record
        return record

    def unmount_layer(self, layer_id: str) -> None:
        record = self._get(self.layers, layer_id, "layer")
        users = [c for c, o in self.overlays.items() if layer_id in o.layer_ids]
        if users:
            raise InvalidStateError(f"layer {layer_id!r} is in use by overlays of {users}")
        record.stack.teardown()
        with self._lock:
            del self.layers[layer_id]

    # -- scratch -----------------------------------------------------------------------------
    def scratch_plan(self, device: str | None) -> tuple[bool, str]:
        """(encrypted, kind) of the scratch `mount_scratch` would build: facts for the policy.

        A disk is checked here already (refused before the policy is even asked)."""
        if device is None:
            return self.memory_encrypted, "memory"
        if self._dm is None:
            raise InvalidStateError(
                "a scratch disk needs device-mapper (dm-crypt, dm-integrity) and this kernel "
                "has none; omit the device to use guest memory"
            )
        from guestagent.storage.scratch import check_scratch_device

        check_scratch_device(device, self.scratch_devices)
        return True, "dm-crypt+integrity"

    def mount_scratch(self, container_id: str, device: str | None) -> ScratchRecord:
        if container_id in self.scratch:
            raise AlreadyExistsError(f"scratch for {container_id!r} already exists")
        target = self.scratch_target(container_id)
        stack = StorageStack()
        encrypted, kind = self.scratch_plan(device)
        if device is None:
            # Guest memory: under SEV-SNP it is encrypted with the VM's key, so a tmpfs
            # scratch never reaches the host in the clear.
            mount_scratch_tmpfs(target, stack)
        else:
            from guestagent.storage.scratch import check_scratch_device

            assert self._dm is not None
            disk = check_scratch_device(device, self.scratch_devices)  # what is used, checked
            name = self.device_name("scratch", container_id)
            mount_scratch_crypt(disk, target, stack, self._dm, name)
        record = ScratchRecord(container_id, target, encrypted, kind, stack)
        with self._lock:
            self.scratch[container_id] = record
        return record

    def unmount_scratch(self, container_id: str) -> None:
        record = self._get(self.scratch, container_id, "scratch")
        if container_id in self.overlays:
            raise InvalidStateError(f"the overlay of {container_id!r} still uses its scratch")
        record.stack.teardown()
        with self._lock:
            del self.scratch[container_id]

    # -- overlays ----------------------------------------------------------------------------
    def mount_overlay(self, container_id: str, layer_ids: list[str]) -> OverlayRecord:
        if container_id in self.overlays:
            raise AlreadyExistsError(f"overlay for {container_id!r} already exists")
        scratch = self._get(self.scratch, container_id, "scratch")
        layers = [self._get(self.layers, layer_id, "layer").target for layer_id in layer_ids]
        stack = StorageStack()
        target = mount_overlay(layers, scratch.target, self.rootfs_target(container_id), stack)
        record = OverlayRecord(container_id, target, list(layer_ids), stack)
        with self._lock:
            self.overlays[container_id] = record
        return record

    def unmount_overlay(self, container_id: str) -> None:
        record = self._get(self.overlays, container_id, "overlay")
        record.stack.teardown()
        with self._lock:
            del self.overlays[container_id]

    # -- everything --------------------------------------------------------------------------
    def teardown_all(self) -> list[str]:
        """Unmount everything, overlays first; returns the failures (each taints the agent)."""
        failures: list[str] = []
        for table in (self.overlays, self.scratch, self.layers):
            for key in list(table):
                try:
                    table[key].stack.teardown()
                except Exception as exc:
                    failures.append(f"{key}: {exc}")
                with self._lock:
                    del table[key]
        return failures

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "layers": [r.describe() for r in self.layers.values()],
            "scratch": [
                {
                    "container_id": r.container_id,
                    "target": r.target,
                    "encrypted": r.encrypted,
                    "kind": r.kind,
                }
                for r in self.scratch.values()
            ],
            "overlays": [
                {"container_id": r.container_id, "target": r.target, "layer_ids": r.layer_ids}
                for r in self.overlays.values()
            ],
        }

    @staticmethod
    def _get(table: dict[str, Any], key: str, what: str) -> Any:
        try:
            return table[key]
        except KeyError:
            raise NotFoundError(f"no {what} {key!r}") from None
