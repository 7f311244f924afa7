"""Facts about the enforcement points that the serving path needs without the engine (the
dispatcher serialises the mutating ones; the engine loads with the first policy)."""

from __future__ import annotations

__all__ = ["MUTATING_POINTS"]

# Points whose allowed decisions change the engine state.
MUTATING_POINTS = frozenset(
    {
        "mount_device",
        "unmount_device",
        "mount_overlay",
        "unmount_overlay",
        "mount_scratch",
        "unmount_scratch",
        "create_container",
        "start_container",
        "exec_in_container",
        "signal_container_process",
        "shutdown_container",
    }
)
