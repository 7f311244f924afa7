"""The composition root: the only place that wires transports, the gate and the effects.

Lifecycle: `start()` opens the SNP backend (refusing to run without one unless told which),
adopts a policy given at start-up, becomes the child subreaper, binds every listener and
notifies readiness; `serve()` runs until SIGTERM/SIGINT; `shutdown()` stops accepting,
answers new requests with `agent.shutting_down`, answers reads in flight (long polls
included) the same way at once, lets mutations finish (bounded by the grace, then answers
them too), closes every connection, removes every container and mount it made, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guestagent import __version__, startgc, timeline
from guestagent.containers.manager import ContainerManager
from guestagent.containers.oom import OomWatch
from guestagent.containers.reaper import Reaper
from guestagent.errors import AgentError, ErrorCode, TaintedError
from guestagent.policy.gate import DenyAllGate, Gate, InsecureAllowAllGate
from guestagent.protocol.framing import DEFAULT_MAX_FRAME
from guestagent.protocol.messages import PROTOCOL_VERSION
from guestagent.records import field, record, replace
from guestagent.rpc.dispatch import Dispatcher
from guestagent.rpc.host import DEFAULT_LIMITS, ConnectionLimits
from guestagent.rpc.pool import BufferBudget, ConnectionPool, Pooled
from guestagent.server import notify
from guestagent.server.adoption import adopt_policy
from guestagent.server.limits import listener_caps
from guestagent.server.logs import denial_record
from guestagent.server.modes import check_modes
from guestagent.server.ops import all_operations
from guestagent.server.reconcile import Reconciliation, reconcile
from guestagent.server.trace import RequestTrace
from guestagent.snp.device import open_backend
from guestagent.snp.paths import DEFAULT_DEVICE as SEV_GUEST_DEVICE
from guestagent.snp.paths import DEFAULT_ROOT as TSM_ROOT
from guestagent.storage.registry import StorageRegistry
from guestagent.transport.listen import Listener, listen
from guestagent.transport.uri import parse_uri

if TYPE_CHECKING:
    from guestagent.attestation.hub import AttestationHub
    from guestagent.console.server import ConsoleServer
    from guestagent.kata.connection import KataConnection
    from guestagent.kata.context import KataContext
    from guestagent.policy.decision import Decision
    from guestagent.snp.backend import SnpBackend
    from guestagent.snp.sim import SimConfig

__all__ = ["Agent", "AgentConfig"]

log = logging.getLogger("guestagent.agent")


@record(mutable=True)
class AgentConfig:
    listen: list[str] = field(default_factory=lambda: ["vsock://any:1024"])
    max_frame: int = DEFAULT_MAX_FRAME
    max_in_flight: int = 128
    max_connections: int = DEFAULT_LIMITS.max_connections  # per listener
    connection_caps: dict[str, int] = field(default_factory=dict)  # per transport (limits.py)
    handshake_timeout: float = DEFAULT_LIMITS.handshake_timeout
    frame_timeout: float = DEFAULT_LIMITS.frame_timeout
    buffer_budget: int = DEFAULT_LIMITS.buffer_budget
    shutdown_grace: float = 10.0
    insecure_allow_all: bool = False
    state_dir: str = "/run/guestagent"
    snp: str = "auto"  # auto | sev-guest | configfs-tsm | sim | none
    sim_state: str | None = None
    sim_config: SimConfig | None = None
    policy_file: str | None = None
    storage_mode: str = "auto"  # auto | dm-verity | verified-loop
    layer_dirs: list[str] = field(default_factory=list)
    scratch_devices: list[str] = field(default_factory=list)  # disks scratch may be made on
    runtime: str | None = None  # runc or crun binary; None: auto-detect
    cgroup_parent: str = "guestagent"  # containers' cgroups live under /<cgroup_parent>/<id>
    manage_containers: bool = True  # become subreaper and run containers
    console: list[str] = field(default_factory=list)  # debug console listeners (read-only)
    trace_file: str | None = None  # every decision's request, as `policy check --trace` reads
    kata: list[str] = field(default_factory=list)  # Kata agent protocol (ttrpc) listeners
    # Where the SEV-SNP interfaces would be. A seam for tests only: no command-line flag sets
    # them, so nothing the host controls can hide real hardware from `check_modes`.
    snp_device: str = SEV_GUEST_DEVICE
    tsm_root: str = TSM_ROOT


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self.state_dir = Path(config.state_dir)
        self.gate: Gate = (
            InsecureAllowAllGate()
            if config.insecure_allow_all
            else DenyAllGate("no policy has been delivered yet")
        )
        self.policy_refused = False
        self.snp: SnpBackend | None = None
        self.snp_error = "no SNP backend was asked for"
        self.tainted: str | None = None
        self.reconciled = Reconciliation()  # what an earlier run left, removed at start
        self.mutation_lock = asyncio.Lock()
        self.dispatcher = Dispatcher(self, all_operations())
        self.storage = StorageRegistry(
            str(self.state_dir / "storage"),
            mode=config.storage_mode,
            layer_dirs=config.layer_dirs,
            scratch_devices=config.scratch_devices,
        )
        self.reaper = Reaper()
        self.oom = OomWatch()
        self.containers: ContainerManager | None = None
        self.attestation: AttestationHub | None = None
        self.console: ConsoleServer | None = None  # only when asked for (--console)
        self.limits = ConnectionLimits(
            max_frame=config.max_frame,
            max_in_flight=config.max_in_flight,
            max_connections=config.max_connections,
            handshake_timeout=config.handshake_timeout,
            frame_timeout=config.frame_timeout,
            buffer_budget=config.buffer_budget,
        )
        self.budget = BufferBudget(self.limits.buffer_budget)
        self.pools: list[ConnectionPool] = []  # every listener's, the Kata ones included
        self.listeners: list[Listener] = []
        self.kata: KataContext | None = None
        self.shutting_down = False
        self.recent_logs: deque[dict[str, Any]] = deque(maxlen=1000)
        self.request_trace = RequestTrace()  # opened in start(): `serve --trace FILE`
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()
        if config.insecure_allow_all:
            log.warning(
                "INSECURE development mode: every request is allowed without a policy",
                extra={"insecure": True},
            )

    # -- policy ------------------------------------------------------------------------------
    def decide(
        self, point: str, facts: dict[str, Any], args: Mapping[str, Any] | None = None
    ) -> Decision:
        """The gate's decision on `facts`; `args` (the operation's arguments) go to the trace."""
        decision = self.gate.decide(point, facts)
        if self.config.insecure_allow_all:
            log.warning("INSECURE allow", extra={"decision": decision.summary()})
        elif not decision.allowed:
            log.warning("denied", extra={"denial": denial_record(decision, facts)})
        if self.request_trace.active:
            self.request_trace.record(point, facts, args, decision)
        return decision

    def log_decision(self, entry: dict[str, Any]) -> None:
        """The policy gate's sink: only called where the policy allows runtime logging."""
        self.recent_logs.append(entry)
        log.info("decision", extra={"decision": entry})

    def adopt_policy(self, policy_bytes: bytes, source: str) -> dict[str, Any]:
        return adopt_policy(self, policy_bytes, source)

    def check_not_tainted(self) -> None:
        if self.tainted:
            raise TaintedError(
                f"the agent refuses changes: an undo failed earlier ({self.tainted})",
                code=ErrorCode.TAINTED,
            )

    def _read_policy_file(self) -> bytes:
        path = self.config.policy_file
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise AgentError(
                f"cannot read --policy {path}: {exc.strerror}", code=ErrorCode.INVALID_ARGUMENT
            ) from None

    def taint(self, why: str) -> None:
        self.tainted = self.tainted or why
        log.error("tainted: refusing all further changes", extra={"why": why})

    def attestation_hub(self) -> AttestationHub | None:
        """The containers' attestation sockets (<state>/attestation/<id>), made with the first
        one a policy grants; None without an SNP backend or in insecure mode."""
        if self.attestation is None and self.snp is not None and not self.config.insecure_allow_all:
            from guestagent.attestation.hub import AttestationHub

            self.attestation = AttestationHub(self.snp, self.state_dir)
        return self.attestation

    def require_containers(self) -> ContainerManager:
        if self.containers is None:
            raise AgentError("this agent does not run containers", code=ErrorCode.RUNTIME)
        return self.containers

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        check_modes(self.config, self.storage.mode)  # before anything is opened or made
        policy_bytes = self._read_policy_file() if self.config.policy_file else None
        if self.config.trace_file:
            self.request_trace = RequestTrace(self.config.trace_file)
            log.warning("tracing every request", extra={"trace": self.config.trace_file})
        if not self.state_dir.is_dir():
            log.info("creating the state directory", extra={"path": str(self.state_dir)})
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._open_snp()
        signer = getattr(self.snp, "child_signer", None)  # the simulator's, if it signs apart
        if signer is not None and policy_bytes is not None:
            signer.start_ahead()  # it loads while the state is reconciled and the engine loads
        await self._reconcile()
        if policy_bytes is not None:
            try:
                self.adopt_policy(policy_bytes, self.config.policy_file)
            except AgentError as exc:  # stay up, deny everything, say why in status
                log.error("policy not adopted", extra={"reason": exc.message})
        if self.config.manage_containers:
            self._start_containers()
        if self.config.console:
            from guestagent.console.server import ConsoleServer

            self.console = ConsoleServer(self, self.config.console)
            await self.console.start()
        caps = listener_caps(self.config)
        for uri in self.config.listen:
            pool = self._pool(uri, caps[uri])
            self.listeners.append(await listen(parse_uri(uri), pool.factory))
            log.info("listening", extra={"uri": uri, "max_connections": caps[uri]})
        if self.config.kata:
            from guestagent.kata.service import listen_kata  # protobuf: only when asked for

            self.kata, kata_listeners = await listen_kata(
                self, self.config.kata, lambda uri, make: self._pool(uri, caps[uri], make)
            )
            self.listeners.extend(kata_listeners)
            log.info("speaking the Kata agent protocol", extra={"uris": self.config.kata})
        timeline.stamp("agent_ready")
        startgc.resume()  # held since the entry point (startgc.py)
        notify.notify(f"READY=1\nSTATUS=serving on {', '.join(self.config.listen)}")
        interval = notify.watchdog_interval()
        if interval:
            self.track(asyncio.get_running_loop().create_task(notify.run_watchdog(interval)))

    def _pool(
        self, uri: str, cap: int, make: Callable[[ConnectionPool], Pooled] | None = None
    ) -> ConnectionPool:
        limits = replace(self.limits, max_connections=cap)
        pool = ConnectionPool(self, uri, self.budget, limits, make)
        self.pools.append(pool)
        return pool

    async def _reconcile(self) -> None:
        cgroup_parent = self.config.cgroup_parent if self.config.manage_containers else None
        # Inline: nothing is served yet, and a worker thread now would stay for the agent's life.
        self.reconciled = reconcile(self.state_dir, cgroup_parent)
        if self.reconciled.failures:
            raise AgentError(
                "refusing to serve: an earlier run left state that could not be removed: "
                + "; ".join(self.reconciled.failures),
                code=ErrorCode.STORAGE,
                details=self.reconciled.describe(),
            )

    def _open_snp(self) -> None:
        if self.config.snp == "none":
            log.warning("no SNP backend: no policy can ever be adopted; everything is denied")
            return
        # `auto` raises when there is no device: the agent refuses to start unattested.
        self.snp = open_backend(
            self.config.snp,
            device_path=self.config.snp_device,
            tsm_root=self.config.tsm_root,
            sim_state=self.config.sim_state,
            sim_config=self.config.sim_config,
            sim_sign_in_child=True,  # the simulator's OpenSSL stays out of the agent
        )
        self.snp_error = ""
        self.storage.memory_encrypted = True  # SEV-SNP (or its simulator) encrypts memory
        description = self.snp.describe()
        if description.get("simulated"):
            log.warning(
                "SIMULATED SEV-SNP backend: reports prove nothing about hardware",
                extra={"snp": description},
            )

    def _start_containers(self) -> None:
        self.reaper.install()  # every child goes through it (containers/children.py)
        self.containers = ContainerManager(
            self.reaper,
            self.state_dir / "containers",
            runtime_binary=self.config.runtime,
            cgroup_parent=self.config.cgroup_parent,
        )

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_shutdown, signum)
        try:
            await self.start()
            await self._stopped.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.release()

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
        if self.console is not None:
            await self.console.stop()
        # Every request in flight is answered (reads at once, mutations within the grace)
        # before its connection closes.
        await asyncio.gather(*(pool.stop(self.config.shutdown_grace) for pool in self.pools))
        self.request_trace.close()
        self._stopped.set()

    async def release(self) -> None:
        """Remove every container and mount the agent made (at exit, or after a failed start)."""
        signer = getattr(self.snp, "child_signer", None)
        if signer is not None:  # a signing child started ahead of a start that failed
            signer.discard()
        if self.containers is not None:
            for problem in await self.containers.shutdown():
                log.error("container cleanup failed", extra={"problem": problem})
            self.containers = None
        if self.attestation is not None:
            await self.attestation.close_all()
        for problem in await asyncio.to_thread(self.storage.teardown_all):
            log.error("storage cleanup failed", extra={"problem": problem})
        self.reaper.close()

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a strong reference to background tasks until they finish."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def connections(self) -> list[Pooled]:
        return [connection for pool in self.pools for connection in pool.connections]

    @property
    def kata_connections(self) -> list[KataConnection]:
        kata = set(self.config.kata)
        return [c for p in self.pools if p.name in kata for c in p.connections]  # type: ignore[misc]

    # -- what the host can read -------------------------------------------------------------
    def hello_result(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "agent": f"guestagent {__version__}",
            "ops": sorted(self.dispatcher.table),
            "max_frame": self.config.max_frame,
        }

    def snp_status(self) -> dict[str, Any]:
        if self.snp is None:
            return {"name": "none", "simulated": False, "reason": self.snp_error}
        return self.snp.describe()

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            "policy": self.gate.describe(),
            "snp": self.snp_status(),
            "insecure": self.config.insecure_allow_all,
            "tainted": self.tainted,
            "storage_mode": self.storage.mode,
            "reconciled": self.reconciled.describe(),
            "listeners": [str(listener.endpoint) for listener in self.listeners],
            "connections": len(self.connections),
            "containers": len(self.containers.list()) if self.containers else 0,
            "runtime": self.containers.runtime.name if self.containers else None,
            "busy": self.dispatcher.resources.busy(),
        }

    def storage_view(self) -> list[dict[str, Any]]:
        """Each mounted layer with its root hash and the policy containers that list it."""
        policy = getattr(self.gate, "policy", None)  # only a PolicyGate has one
        view = []
        for layer in self.storage.layers.values():
            entry = layer.describe()
            entry["allowed_by"] = (
                [c.name for c in policy.containers if layer.root_hash in c.layers]
                if policy is not None
                else []
            )
            view.append(entry)
        return view
