"""Boot timeline stamps: `guestagent-timeline: <stage> <seconds since boot>` on stderr.

Printed only when GUESTAGENT_TIMELINE=1 is in the environment (in the guest: on the kernel
command line, which the kernel hands to init's environment, and init to the agent's). The
clock is CLOCK_BOOTTIME, the one /proc/uptime shows, so the initramfs's stamps and these share
one zero. Diagnostics only: nothing reads them back. `STARTED` is taken when this module is
first imported, which the entry points do before anything else.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["STARTED", "enabled", "now", "stamp"]


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


STARTED = now()


def enabled() -> bool:
    return os.environ.get("GUESTAGENT_TIMELINE") == "1"


def stamp(stage: str, at: float | None = None) -> None:
    if enabled():
        at = now() if at is None else at
        print(f"guestagent-timeline: {stage} {at:.3f}", file=sys.stderr, flush=True)
