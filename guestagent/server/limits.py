"""Fit the connection cap to the process's file descriptor limit.

Each connection is one fd. If connections alone could use up RLIMIT_NOFILE, the agent could
no longer accept a good client, open a layer image or a container's pipes. So at start-up the
soft limit is raised as far as needed (up to the hard limit), and if that is not enough the
per-listener cap is lowered so that `FD_RESERVE` fds always stay free for everything else,
and `BACKLOG` more for a burst of accepts (asyncio accepts that many at once, before the
pool closes those over the cap).
"""

from __future__ import annotations

import dataclasses
import logging
import resource

from guestagent.rpc.host import ConnectionLimits
from guestagent.transport.listen import BACKLOG

__all__ = ["FD_RESERVE", "fit_fd_limit"]

log = logging.getLogger("guestagent.agent")
FD_RESERVE = 256  # for layer images, containers' stdio pipes, the console, the state dir


def fit_fd_limit(limits: ConnectionLimits, listeners: int) -> ConnectionLimits:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = FD_RESERVE + BACKLOG
    needed = spare + limits.max_connections * max(1, listeners)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the fd limit", extra={"error": str(exc)})
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limits
    reserve = min(spare, soft // 2)
    fitted = max(1, (soft - reserve) // max(1, listeners))
    log.warning(
        "connection cap lowered to fit the fd limit",
        extra={"max_connections": fitted, "fd_limit": soft},
    )
    return dataclasses.replace(limits, max_connections=fitted)
