"""Storage enforcement points: dm-verity devices, container overlays, scratch space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.persistent import PMap
from guestagent.policy.rules._common import allow, deny
from guestagent.policy.rules._input import BOOL, STR, STR_LIST, Schema, check_input
from guestagent.policy.state import Overlay, PolicyState

__all__ = [
    "decide_mount_device",
    "decide_mount_overlay",
    "decide_mount_scratch",
    "decide_unmount_device",
    "decide_unmount_overlay",
    "decide_unmount_scratch",
]

_TARGET = Schema({"target": STR})
_DEVICE = Schema({"target": STR, "device_hash": STR})
_OVERLAY = Schema({"container_id": STR, "layer_paths": STR_LIST, "target": STR})
_SCRATCH = Schema({"target": STR, "encrypted": BOOL})


def _in_use(state: PolicyState, target: str) -> str | None:
    if target in state.devices:
        return "a dm-verity layer"
    if target in state.overlays:
        return "an overlay"
    if target in state.scratch:
        return "scratch space"
    return None


def decide_mount_device(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "mount_device"
    check_input(req, _DEVICE)
    target, digest = req["target"], req["device_hash"].lower()
    used = _in_use(state, target)
    if used:
        return deny(point, "target", f"{target} already holds {used}", asked=target)
    if digest not in policy.layer_hashes:
        return deny(
            point,
            "device_hash",
            f"root hash {digest} is not a layer of any policy container",
            asked=digest,
            allowed=sorted(policy.layer_hashes),
        )
    after = state.evolve(devices=state.devices.set(target, digest))
    data = {"corruption_mode": policy.verity_corruption}
    return allow(point, f"layer {digest[:16]}... is in the policy", state, after, data)


def decide_unmount_device(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "unmount_device"
    check_input(req, _TARGET)
    target = req["target"]
    if target not in state.devices:
        return deny(point, "target", f"no layer device is mounted at {target}", asked=target)
    users = state.layer_users.get(target)
    if users:
        return deny(
            point,
            "target",
            f"{target} is a layer of the overlay at {users[0]}",
            asked=target,
            overlay=users[0],
        )
    after = state.evolve(devices=state.devices.delete(target))
    return allow(point, f"{target} was a mounted layer", state, after)


Users = PMap[str, tuple[str, ...]]


def _add_user(users: Users, paths: tuple[str, ...], overlay: str) -> Users:
    """Record `overlay` (last, so the list keeps mount order) as a user of each layer path."""
    return users.set_many([(path, (*users.get(path, ()), overlay)) for path in set(paths)])


def _remove_user(users: Users, paths: tuple[str, ...], overlay: str) -> Users:
    kept, gone = [], []
    for path in set(paths):
        was = users.get(path, ())
        # Usually the only overlay on the layer: skip the generator then.
        left = () if was == (overlay,) else tuple(t for t in was if t != overlay)
        if left:
            kept.append((path, left))
        else:
            gone.append(path)
    return (users.set_many(kept) if kept else users).delete(*gone)


def _layer_mismatch(policy: Policy, hashes: tuple[str, ...]) -> list[dict[str, Any]]:
    """For each policy container: the first layer position that differs, and what it wants."""
    nearest = []
    for index, container in enumerate(policy.containers):
        want = container.layers
        pos = next(
            (i for i, (a, b) in enumerate(zip(want, hashes, strict=False)) if a != b),
            min(len(want), len(hashes)),
        )
        entry: dict[str, Any] = {
            "container": container.name,
            "index": index,
            "position": pos,
            "layers_expected": len(want),
            "layers_given": len(hashes),
        }
        if pos < len(want):
            entry["expected"] = want[pos]
        if pos < len(hashes):
            entry["given"] = hashes[pos]
        nearest.append(entry)
    nearest.sort(key=lambda e: -e["position"])
    return nearest[:4]


def decide_mount_overlay(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "mount_overlay"
    check_input(req, _OVERLAY)
    cid, paths, target = req["container_id"], tuple(req["layer_paths"]), req["target"]
    if cid in state.candidates:
        return deny(
            point, "container_id", f"container {cid} already has a root filesystem", asked=cid
        )
    used = _in_use(state, target)
    if used:
        return deny(point, "target", f"{target} already holds {used}", asked=target)
    hashes = tuple(map(state.devices.get, paths))
    if None in hashes or not paths:
        missing = [p for p in paths if p not in state.devices]
        return deny(
            point,
            "layer_paths",
            f"{missing[0] if missing else 'no layer'} is not a verified layer mount",
            asked=list(paths),
            mounted=sorted(state.devices),
        )
    candidates = policy.by_layers.get(hashes)
    if not candidates:
        return deny(
            point,
            "layer_paths",
            "the layers (base first) match no policy container's layers in order",
            asked=list(hashes),
            candidates=_layer_mismatch(policy, hashes),
        )
    after = state.evolve(
        overlays=state.overlays.set(target, Overlay(cid, paths, hashes)),
        candidates=state.candidates.set(cid, candidates),
        rootfs=state.rootfs.set(cid, target),
        layer_users=_add_user(state.layer_users, paths, target),
    )
    names = [policy.containers[i].name for i in candidates]
    return allow(point, f"layers match {', '.join(names)}", state, after, {"candidates": names})


def decide_unmount_overlay(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "unmount_overlay"
    check_input(req, _TARGET)
    target = req["target"]
    overlay = state.overlays.get(target)
    if overlay is None:
        return deny(point, "target", f"no overlay is mounted at {target}", asked=target)
    cid = overlay.container_id
    if cid in state.created:
        return deny(
            point,
            "target",
            f"container {cid} still uses the overlay at {target}",
            asked=target,
            container_id=cid,
        )
    after = state.evolve(
        overlays=state.overlays.delete(target),
        candidates=state.candidates.delete(cid),
        rootfs=state.rootfs.delete(cid),
        layer_users=_remove_user(state.layer_users, overlay.layer_paths, target),
    )
    return allow(point, f"{target} was the overlay of {cid}", state, after)


def decide_mount_scratch(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "mount_scratch"
    check_input(req, _SCRATCH)
    target = req["target"]
    used = _in_use(state, target)
    if used:
        return deny(point, "target", f"{target} already holds {used}", asked=target)
    if not req["encrypted"] and not policy.allow_unencrypted_scratch:
        return deny(
            point,
            "encrypted",
            "scratch must be encrypted: the policy does not allow_unencrypted_scratch",
            asked=False,
            allowed=[True],
        )
    after = state.evolve(scratch=state.scratch.set(target, req["encrypted"]))
    return allow(point, "scratch space allowed", state, after)


def decide_unmount_scratch(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "unmount_scratch"
    check_input(req, _TARGET)
    if req["target"] not in state.scratch:
        return deny(
            point, "target", f"no scratch space is mounted at {req['target']}", asked=req["target"]
        )
    after = state.evolve(scratch=state.scratch.delete(req["target"]))
    return allow(point, "scratch space was mounted", state, after)
