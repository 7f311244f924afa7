"""The engine's state: what the policy has allowed so far. Frozen; every change is a copy.

The collections are persistent (`PMap`, `PSet`, see persistent.py): read-only, and a
change costs about the same whether the state knows five devices or five thousand. A state
can be shared freely: a denied decision (which carries no next state) can never alter it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from guestagent.policy.persistent import PMap, PSet, pmap, pset
from guestagent.records import record

__all__ = [
    "EMPTY_STATE",
    "Overlay",
    "PolicyState",
    "Transition",
    "with_item",
    "without_item",
]

K = TypeVar("K")
V = TypeVar("V")

_set_slot = object.__setattr__
_new = object.__new__
_EMPTY_MAP: PMap[Any, Any] = pmap()
_EMPTY_SET: PSet[Any] = pset()


def with_item(mapping: Mapping[K, V], key: K, value: V) -> PMap[K, V]:
    return pmap(mapping).set(key, value)


def without_item(mapping: Mapping[K, V], *keys: K) -> PMap[K, V]:
    return pmap(mapping).delete(*keys)


@record
class Overlay:
    container_id: str
    layer_paths: tuple[str, ...]
    layers: tuple[str, ...]  # the verified root hashes of layer_paths, base first


@record(slots=False)  # evolve() and revert() work on the instance dict
class PolicyState:
    """Mounted devices, overlays, scratch, containers and the policy entries still matching.

    `candidates[container_id]` holds the indices of the policy containers that still match
    everything learned about the container; it only ever narrows (as in hcsshim).
    `layer_users[device target]` lists the overlays (in mount order) built on that device.
    """

    devices: PMap[str, str]  # target -> root hash
    overlays: PMap[str, Overlay]  # target -> overlay
    scratch: PMap[str, bool]  # target -> encrypted
    candidates: PMap[str, tuple[int, ...]]
    rootfs: PMap[str, str]  # container_id -> overlay target
    created: PSet[str]
    started: PSet[str]
    processes: PMap[str, frozenset[tuple[str, ...]]]  # container_id -> exec'd argvs
    layer_users: PMap[str, tuple[str, ...]]

    def __init__(
        self,
        devices: Mapping[str, str] = _EMPTY_MAP,
        overlays: Mapping[str, Overlay] = _EMPTY_MAP,
        scratch: Mapping[str, bool] = _EMPTY_MAP,
        candidates: Mapping[str, tuple[int, ...]] = _EMPTY_MAP,
        rootfs: Mapping[str, str] = _EMPTY_MAP,
        created: Iterable[str] = _EMPTY_SET,
        started: Iterable[str] = _EMPTY_SET,
        processes: Mapping[str, frozenset[tuple[str, ...]]] = _EMPTY_MAP,
        layer_users: Mapping[str, tuple[str, ...]] = _EMPTY_MAP,
    ) -> None:
        fields = {
            "devices": pmap(devices),
            "overlays": pmap(overlays),
            "scratch": pmap(scratch),
            "candidates": pmap(candidates),
            "rootfs": pmap(rootfs),
            "created": pset(created),
            "started": pset(started),
            "processes": pmap(processes),
            "layer_users": pmap(layer_users),
        }
        _set_slot(self, "__dict__", fields)

    def evolve(self, **changes: Any) -> PolicyState:
        """A copy with `changes` (persistent collections, known field names) applied.

        No conversion and no checks: this runs on every allowed decision, and the rules
        pass PMap/PSet values made from the current ones.
        """
        new = _new(PolicyState)
        _set_slot(new, "__dict__", {**self.__dict__, **changes})
        return new

    def revert(self, before: PolicyState, after: PolicyState) -> PolicyState:
        """This state with the change from `before` to `after` undone, entry by entry.

        For a decision committed before its effect ran (a reservation) whose effect then
        failed: decisions committed since touched other entries (a container's own entries
        are only ever changed by requests about that container, which the reservation
        made the policy rule on as if the effect had happened), so only the entries this
        transition changed are put back.
        """
        changes: dict[str, Any] = {}
        for name, now in self.__dict__.items():
            old, new = before.__dict__[name], after.__dict__[name]
            if old is new:
                continue
            if isinstance(now, AbstractSet):
                for item in old ^ new:
                    now = now.add(item) if item in old else now.discard(item)
            else:
                for key in set(old) | set(new):
                    if key not in old:
                        now = now.delete(key) if key in now else now
                    elif key not in new or old[key] != new[key]:
                        now = now.set(key, old[key])
            changes[name] = now
        return self.evolve(**changes) if changes else self

    def summary(self) -> dict[str, Any]:
        return {
            "devices": len(self.devices),
            "overlays": len(self.overlays),
            "scratch": len(self.scratch),
            "containers": len(self.candidates),
            "created": len(self.created),
            "started": len(self.started),
            "processes": sum(map(len, self.processes.values())),
        }


EMPTY_STATE = PolicyState()


@record
class Transition:
    """An allowed decision's next state, tied to the state it was decided against.

    The gate commits `after` only if its current state is still `before` (by identity), so
    a decision made against a state that has since moved on is detected as stale.
    """

    before: PolicyState
    after: PolicyState

    def __init__(self, before: PolicyState, after: PolicyState) -> None:
        _set_slot(self, "before", before)
        _set_slot(self, "after", after)
