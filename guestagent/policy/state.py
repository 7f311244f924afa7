"""The engine's state: what the policy has allowed so far. Frozen; every change is a copy.

Mappings are read-only views over dicts nobody else holds, so a state can be shared freely
and a denied decision (which carries no next state) can never alter it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["EMPTY_STATE", "Overlay", "PolicyState", "Transition", "with_item", "without_item"]

K = TypeVar("K")
V = TypeVar("V")


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


def with_item(mapping: Mapping[K, V], key: K, value: V) -> Mapping[K, V]:
    copy = dict(mapping)
    copy[key] = value
    return MappingProxyType(copy)


def without_item(mapping: Mapping[K, V], *keys: K) -> Mapping[K, V]:
    copy = dict(mapping)
    for key in keys:
        copy.pop(key, None)
    return MappingProxyType(copy)


@dataclass(frozen=True, slots=True)
class Overlay:
    container_id: str
    layer_paths: tuple[str, ...]
    layers: tuple[str, ...]  # the verified root hashes of layer_paths, base first


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Mounted devices, overlays, scratch, containers and the policy entries still matching.

    `candidates[container_id]` holds the indices of the policy containers that still match
    everything learned about the container; it only ever narrows (as in hcsshim).
    """

    devices: Mapping[str, str] = field(default_factory=_empty)  # target -> root hash
    overlays: Mapping[str, Overlay] = field(default_factory=_empty)  # target -> overlay
    scratch: Mapping[str, bool] = field(default_factory=_empty)  # target -> encrypted
    candidates: Mapping[str, tuple[int, ...]] = field(default_factory=_empty)
    rootfs: Mapping[str, str] = field(default_factory=_empty)  # container_id -> overlay target
    created: frozenset[str] = frozenset()
    started: frozenset[str] = frozenset()
    processes: frozenset[tuple[str, tuple[str, ...]]] = frozenset()  # (container_id, argv)

    def evolve(self, **changes: Any) -> PolicyState:
        """A copy with `changes` applied (faster than dataclasses.replace on the hot path)."""
        get = changes.get
        return PolicyState(
            get("devices", self.devices),
            get("overlays", self.overlays),
            get("scratch", self.scratch),
            get("candidates", self.candidates),
            get("rootfs", self.rootfs),
            get("created", self.created),
            get("started", self.started),
            get("processes", self.processes),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "devices": len(self.devices),
            "overlays": len(self.overlays),
            "scratch": len(self.scratch),
            "containers": len(self.candidates),
            "created": len(self.created),
            "started": len(self.started),
            "processes": len(self.processes),
        }


EMPTY_STATE = PolicyState()


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed decision's next state, tied to the state it was decided against.

    The gate commits `after` only if its current state is still `before` (by identity), so
    a decision made against a state that has since moved on is detected as stale.
    """

    before: PolicyState
    after: PolicyState
