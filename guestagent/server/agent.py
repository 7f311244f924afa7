"""The composition root: the only place that wires transports, the gate and the effects.

Lifecycle: `start()` binds every listener and notifies readiness; `serve()` runs until a
shutdown is requested (SIGTERM/SIGINT); `shutdown()` stops accepting, answers new requests
with `agent.shutting_down`, lets in-flight requests finish (bounded), then closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestagent import __version__
from guestagent.errors import ErrorCode, TaintedError
from guestagent.policy.gate import DenyAllGate, Gate, InsecureAllowAllGate
from guestagent.protocol.framing import DEFAULT_MAX_FRAME
from guestagent.protocol.messages import PROTOCOL_VERSION
from guestagent.server import notify
from guestagent.server.connection import Connection
from guestagent.server.dispatch import Dispatcher
from guestagent.server.ops import all_operations
from guestagent.transport.listen import Listener, listen
from guestagent.transport.uri import parse_uri

if TYPE_CHECKING:
    from guestagent.policy.decision import Decision

__all__ = ["Agent", "AgentConfig"]

log = logging.getLogger("guestagent.agent")


@dataclass
class AgentConfig:
    listen: list[str] = field(default_factory=lambda: ["vsock://any:1024"])
    max_frame: int = DEFAULT_MAX_FRAME
    max_in_flight: int = 128
    shutdown_grace: float = 10.0
    insecure_allow_all: bool = False
    state_dir: str = "/run/guestagent"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self.gate: Gate = (
            InsecureAllowAllGate()
            if config.insecure_allow_all
            else DenyAllGate("no policy has been delivered yet")
        )
        self.tainted: str | None = None
        self.mutation_lock = asyncio.Lock()
        self.dispatcher = Dispatcher(self, all_operations())
        self.connections: set[Connection] = set()
        self.listeners: list[Listener] = []
        self.shutting_down = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        if config.insecure_allow_all:
            log.warning(
                "INSECURE development mode: every request is allowed without a policy",
                extra={"insecure": True},
            )

    # -- policy ------------------------------------------------------------------------------
    def decide(self, point: str, facts: dict[str, Any]) -> Decision:
        decision = self.gate.decide(point, facts)
        log.info(
            "decision",
            extra={"decision": decision.summary(), "insecure": self.config.insecure_allow_all},
        )
        return decision

    def check_not_tainted(self) -> None:
        if self.tainted:
            raise TaintedError(
                f"the agent refuses changes: an undo failed earlier ({self.tainted})",
                code=ErrorCode.TAINTED,
            )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for uri in self.config.listen:
            listener = await listen(parse_uri(uri), lambda: Connection(self))
            self.listeners.append(listener)
            log.info("listening", extra={"uri": uri})
        notify.notify(f"READY=1\nSTATUS=serving on {', '.join(self.config.listen)}")
        interval = notify.watchdog_interval()
        if interval:
            self.track(asyncio.get_running_loop().create_task(notify.run_watchdog(interval)))

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_shutdown, signum)
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def request_shutdown(self, signum: int | None = None) -> None:
        if not self.shutting_down:
            log.info("shutdown requested", extra={"signal": signum})
            self.track(asyncio.get_running_loop().create_task(self.shutdown()))

    async def shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        notify.notify("STOPPING=1")
        for listener in self.listeners:
            await listener.close()
        in_flight = [t for c in self.connections for t in c.in_flight.values()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=self.config.shutdown_grace)
        for connection in list(self.connections):
            connection.close()
        await asyncio.sleep(0)  # let transports flush and report connection_lost
        self._stopped.set()

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a strong reference to background tasks until they finish."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what the host can read -------------------------------------------------------------
    def hello_result(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "agent": f"guestagent {__version__}",
            "ops": sorted(self.dispatcher.table),
            "max_frame": self.config.max_frame,
        }

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            "policy": self.gate.describe(),
            "insecure": self.config.insecure_allow_all,
            "tainted": self.tainted,
            "listeners": [str(listener.endpoint) for listener in self.listeners],
            "connections": len(self.connections),
        }
