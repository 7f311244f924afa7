"""A real agent with the parts the console reads, policies adopted through measurement, and
a console served on a unix socket (in the test's loop, or in a thread for CLI subprocesses)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from guestagent.client import AsyncClient
from guestagent.console import COMMANDS, ConsoleServer
from guestagent.policy.gate import PolicyGate
from guestagent.policy.measure import adopt, measure
from guestagent.server.agent import Agent, AgentConfig
from guestagent.snp.report import parse_report
from guestagent.snp.sim import SimBackend, SimConfig

LAYER_BASE = hashlib.sha256(b"console test base layer").hexdigest()
LAYER_APP = hashlib.sha256(b"console test app layer").hexdigest()
ALL_COMMANDS = list(COMMANDS)


def entry(name: str, layers: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "layers": layers,
        "command": ["/bin/sleep", "3600"],
        "env_rules": [{"pattern": "PATH=/bin", "strategy": "string", "required": True}],
        "working_dir": "/",
        "user": {"uid": 0, "gid": 0, "additional_gids": []},
        **extra,
    }


def policy_bytes(
    commands: list[str] | None = None,
    *,
    enabled: bool = True,
    entries: list[dict[str, Any]] | None = None,
) -> bytes:
    """A policy whose debug console allows `commands` (all by default)."""
    document: dict[str, Any] = {
        "version": 1,
        "containers": entries
        or [entry("app", [LAYER_BASE, LAYER_APP]), entry("base-only", [LAYER_BASE])],
        "debug_console": {
            "enabled": enabled,
            "commands": ALL_COMMANDS if commands is None else commands,
        },
    }
    return json.dumps(document, indent=1).encode()


class InspectableAgent(Agent):
    """The agent plus what the lead is wiring into it: the SNP backend, the container manager
    and the storage view. Everything else is the real Agent."""

    def __init__(self, config: AgentConfig, **parts: Any) -> None:
        super().__init__(config)
        self.snp = parts.get("snp")
        self.containers = parts.get("containers")
        self.layers: list[dict[str, Any]] = []

    def storage_view(self) -> list[dict[str, Any]]:
        return [dict(layer) for layer in self.layers]


def new_agent(state_dir: Path) -> InspectableAgent:
    return InspectableAgent(AgentConfig(listen=[], state_dir=str(state_dir)))


def adopt_policy(agent: InspectableAgent, raw: bytes, sim_state: Path) -> SimBackend:
    """Launch the simulated guest with HOST_DATA = the policy's digest, then adopt the policy
    the way the agent does: only if its measurement equals HOST_DATA from a fresh report."""
    backend = SimBackend(sim_state, SimConfig(host_data=measure(raw).host_data))
    result = adopt(raw, parse_report(backend.get_report(bytes(64))).host_data)
    assert result.accepted, result.reason
    assert result.policy is not None
    agent.snp = backend
    agent.gate = PolicyGate(result.policy, digest=result.actual_hex)
    return backend


def record_mounts(agent: InspectableAgent, container_id: str = "c1") -> None:
    """Drive the pure policy engine through mount_device x2 and mount_overlay (as the agent's
    storage handlers do), and list the layers in the storage view."""
    targets = []
    for number, root in enumerate((LAYER_BASE, LAYER_APP)):
        target = f"/run/guestagent/layers/{number}"
        decision = agent.decide("mount_device", {"target": target, "device_hash": root})
        decision.raise_if_denied()
        agent.gate.commit(decision)
        agent.layers.append(
            {
                "target": target,
                "root_hash": root,
                "source": f"/dev/loop{90 + number}",
                "mode": "verified-loop",
                "layer_id": f"layer{number}",
            }
        )
        targets.append(target)
    overlay = {
        "container_id": container_id,
        "layer_paths": targets,
        "target": f"/run/guestagent/containers/{container_id}/rootfs",
    }
    decision = agent.decide("mount_overlay", overlay)
    decision.raise_if_denied()
    agent.gate.commit(decision)


def short_dir() -> Path:
    """unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="gac-"))


@contextlib.asynccontextmanager
async def console_client(agent: Agent) -> AsyncIterator[tuple[ConsoleServer, AsyncClient]]:
    directory = short_dir()
    uri = f"unix://{directory}/console.sock"
    console = ConsoleServer(agent, [uri])  # type: ignore[arg-type]
    await console.start()
    client = await AsyncClient.connect(uri)
    try:
        yield console, client
    finally:
        await client.close()
        await console.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def console_in_thread(setup: Callable[[InspectableAgent], None]) -> Iterator[str]:
    """Serve a console for an agent (prepared by `setup`) from a background thread's loop;
    yields its URI, for clients running as subprocesses."""
    directory = short_dir()
    uri = f"unix://{directory}/console.sock"
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        agent = new_agent(directory / "state")
        setup(agent)
        console = ConsoleServer(agent, [uri])
        await console.start()
        box["stop"] = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        ready.set()
        await box["stop"].wait()
        await console.stop()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "console did not start"
    try:
        yield uri
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        shutil.rmtree(directory, ignore_errors=True)
