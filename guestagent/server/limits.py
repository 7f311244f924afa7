"""Connection caps per transport, fitted to the process's file descriptor limit.

Each listener has its own cap (`serve --max-connections N` for all, `TRANSPORT=N` for the
listeners of one transport: unix, vsock, serial, kata). Each connection is one fd. If
connections alone could use up RLIMIT_NOFILE, the agent could no longer accept a good
client, open a layer image or a container's pipes. So at start-up the soft limit is raised
as far as needed (up to the hard limit), and if that is not enough every listener's cap is
lowered in proportion, so that `FD_RESERVE` fds always stay free for everything else, and
`BACKLOG` more for a burst of accepts (asyncio accepts that many at once, before the pool
closes those over the cap).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Mapping
from typing import TYPE_CHECKING

from guestagent.errors import AgentError
from guestagent.transport.listen import BACKLOG
from guestagent.transport.uri import parse_uri

if TYPE_CHECKING:
    from guestagent.server.agent import AgentConfig

__all__ = [
    "FD_RESERVE",
    "TRANSPORTS",
    "connection_cap",
    "fit_fd_limit",
    "listener_caps",
    "parse_caps",
]

log = logging.getLogger("guestagent.agent")
FD_RESERVE = 256  # for layer images, containers' stdio pipes, the console, the state dir
TRANSPORTS = ("unix", "vsock", "serial", "kata")  # "kata": the Kata (ttrpc) listeners


def parse_caps(values: list[str], default: int) -> tuple[int, dict[str, int]]:
    """`--max-connections` values: `N` (every listener) or `TRANSPORT=N` (its listeners)."""
    caps: dict[str, int] = {}
    for value in values:
        transport, _, number = value.rpartition("=")
        if transport and transport not in TRANSPORTS:
            raise AgentError(
                f"--max-connections {value}: the transport must be one of {', '.join(TRANSPORTS)}"
            )
        try:
            cap = int(number)
        except ValueError:
            raise AgentError(f"--max-connections {value}: expected N or TRANSPORT=N") from None
        if cap < 1:
            raise AgentError(f"--max-connections {value}: the cap must be at least 1")
        if transport:
            caps[transport] = cap
        else:
            default = cap
    return default, caps


def connection_cap(transport: str, default: int, caps: Mapping[str, int]) -> int:
    return caps.get(transport, default)


def listener_caps(config: AgentConfig) -> dict[str, int]:
    """Each listener's cap (by URI): its transport's, lowered if the fd limit cannot hold
    them all. The Kata listeners count as the transport `kata`, whatever they run over."""
    default, caps = config.max_connections, config.connection_caps
    wanted = {uri: connection_cap(parse_uri(uri).scheme, default, caps) for uri in config.listen}
    wanted.update((uri, connection_cap("kata", default, caps)) for uri in config.kata)
    return dict(zip(wanted, fit_fd_limit(list(wanted.values())), strict=True))


def fit_fd_limit(caps: list[int]) -> list[int]:
    """The listeners' caps, lowered (in proportion) if the fd limit cannot hold them all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = FD_RESERVE + BACKLOG
    wanted = sum(caps)
    needed = spare + wanted
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the fd limit", extra={"error": str(exc)})
    if not caps or soft == resource.RLIM_INFINITY or soft >= needed:
        return caps
    available = soft - min(spare, soft // 2)
    fitted = [max(1, cap * available // wanted) for cap in caps]
    log.warning(
        "connection cap lowered to fit the fd limit",
        extra={"max_connections": fitted, "fd_limit": soft},
    )
    return fitted
