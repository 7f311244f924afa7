"""The boot timeline: each stage from QEMU start to a container's first output byte.

Two clocks. The guest stamps its own stages with CLOCK_BOOTTIME (`guestagent-timeline: <stage>
<seconds>` on the serial console, printed by the initramfs and by `guestagent init` and the
agent when the kernel command line carries GUESTAGENT_TIMELINE=1, which the kernel hands to
init's environment). The host stamps QEMU's start and each request of the flow it drives.
Guest stamps are put on the host's clock by the console lines' arrival: a line arrives after
it was printed, so the smallest arrival-minus-stamp over all lines is the kernel clock's zero
on the host clock, to within the console poll (10 ms). Before that zero is firmware and the
kernel's decompression, which no guest clock sees.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CMDLINE",
    "ConsoleStamps",
    "Stage",
    "guest_stages",
    "host_stage",
    "markdown_table",
]

CMDLINE = "GUESTAGENT_TIMELINE=1"
STAMP = re.compile(r"guestagent-timeline: ([a-z_]+) (\d+\.\d+)")

# Guest stamps, in boot order, and the stage that ends at each.
GUEST_STAGES = (
    ("initramfs", "kernel (clock zero to /init)"),
    ("modules", "initramfs: kernel modules"),
    ("root_device", "initramfs: root device wait"),
    ("verity_root", "initramfs: dm-verity root + erofs mount"),
    ("switch_root", "initramfs: overlay root, move mounts"),
    ("init_python", "switch_root + Python start (init)"),
    ("init_imported", "init: imports"),
    ("init_up", "init: bring-up (mounts, entropy, hostname)"),
    ("agent_python", "agent: Python start"),
    ("agent_imported", "agent: imports"),
    ("agent_ready", "agent: start-up to listening"),
)


@dataclass(frozen=True)
class Stage:
    name: str
    start: float  # seconds after QEMU start, host clock
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


class ConsoleStamps:
    """Polls the console log; records each stamp line's guest time and host arrival time."""

    def __init__(self, console_log: Path, started_at: float, poll: float = 0.01) -> None:
        self.path = console_log
        self.started_at = started_at
        self.poll = poll
        self.stamps: dict[str, tuple[float, float]] = {}  # stage -> (guest s, arrival s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConsoleStamps:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._read()

    def _read(self) -> None:
        arrived = time.monotonic() - self.started_at
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return
        for match in STAMP.finditer(text):
            self.stamps.setdefault(match.group(1), (float(match.group(2)), arrived))

    def kernel_zero(self) -> float:
        """The guest clock's zero on the host clock (seconds after QEMU start)."""
        return min(arrival - guest for guest, arrival in self.stamps.values())


def guest_stages(stamps: ConsoleStamps) -> list[Stage]:
    """Firmware, then each stage between consecutive guest stamps (on the host clock)."""
    zero = stamps.kernel_zero()
    stages = [Stage("firmware + kernel decompression (QEMU start to clock zero)", 0.0, zero)]
    previous = zero
    for stamp, name in GUEST_STAGES:
        if stamp not in stamps.stamps:
            raise AssertionError(f"no {stamp!r} stamp on the console: {sorted(stamps.stamps)}")
        at = zero + stamps.stamps[stamp][0]
        stages.append(Stage(name, previous, at))
        previous = at
    return stages


def host_stage(
    name: str, started_at: float, action: Callable[[], Any], since: float | None = None
) -> tuple[Stage, Any]:
    """Run `action` (one step of the flow) and time it on the host clock, from `since` (the
    previous step's end, so that no time between steps goes unaccounted) or from now."""
    began = time.monotonic() - started_at if since is None else since
    result = action()
    return Stage(name, began, time.monotonic() - started_at), result


def markdown_table(stages: list[Stage]) -> str:
    total = stages[-1].end - stages[0].start
    lines = ["| stage | ms | share |", "|---|---:|---:|"]
    for stage in stages:
        lines.append(f"| {stage.name} | {stage.ms:,.0f} | {stage.ms / 10 / total:.1f}% |")
    lines.append(f"| **QEMU start to first output byte** | **{total * 1000:,.0f}** | 100% |")
    return "\n".join(lines)
