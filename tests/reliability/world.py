"""What the reliability suites run against: verified layers, a measured policy, a sim chip.

One `ReliabilityWorld` per test session: a busybox layer, a second small layer (for layer
order tests), a policy listing several containers on them, and a simulator state directory
(its RSA keys are slow to make, so it is made once and shared by every agent).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guestagent.client import Client
from guestagent.demo import assets
from guestagent.policy.measure import measure
from guestagent.storage.layer import build_layer
from tests.integration.agent_process import AgentProcess, running_agent

__all__ = [
    "FILL_COMMAND",
    "SLEEP_COMMAND",
    "TRUE_COMMAND",
    "ReliabilityWorld",
    "agent_with_policy",
    "build_world",
    "prepare_overlay",
    "reliability_policy",
    "spec",
]

TRUE_COMMAND = ["/bin/true"]
SLEEP_COMMAND = ["/bin/sleep", "600"]
# Writes into a 1 MiB tmpfs until it is full: the container must see ENOSPC.
FILL_COMMAND = ["/bin/sh", "-c", "dd if=/dev/zero of=/data/fill bs=64k 2>&1; echo exit=$?"]
FILL_MOUNT = {
    "type": "tmpfs",
    "source": "tmpfs",
    "destination": "/data",
    "options": ["nosuid", "nodev", "size=1m"],
}
PATH_RULE = {"pattern": assets.PATH, "strategy": "string", "required": True}
# RE2 rules the security regressions aim at: \d is ASCII only; a nested repeat is linear.
RE2_RULES = [
    {"pattern": "PORT=\\d{2,5}", "strategy": "re2", "required": False},
    {"pattern": "FOO=.*,.*,.*,.*;", "strategy": "re2", "required": False},
]


@dataclass
class ReliabilityWorld:
    base: Path
    layer_dir: Path
    layer: Path  # the busybox layer
    extra: Path  # a small second layer
    base_hash: str
    extra_hash: str
    policy: Path
    host_data: str
    sim_state: Path

    def agent_args(self, *extra: str, policy: bool = True) -> tuple[str, ...]:
        args = [
            "--snp",
            "sim",
            "--sim-state",
            str(self.sim_state),
            "--sim-host-data",
            self.host_data,
            "--layer-dir",
            str(self.layer_dir),
            "--log-level",
            "warning",
        ]
        if policy:
            args += ["--policy", str(self.policy)]
        return (*args, *extra)


def _container(name: str, command: list[str], layers: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "layers": layers,
        "command": command,
        "env_rules": [PATH_RULE],
        "working_dir": "/",
        "user": {"uid": 0, "gid": 0, "additional_gids": []},
        "no_new_privileges": True,
        "hostname": "demo",  # the one assets.host_spec names
        **extra,
    }


def reliability_policy(base_hash: str, extra_hash: str) -> bytes:
    """The demo container plus trivial, sleeping, disk-filling and two-layer containers."""
    demo = json.loads(assets.demo_policy([base_hash]))
    containers = [
        *demo["containers"],
        _container(
            "true",
            TRUE_COMMAND,
            [base_hash],
            env_rules=[PATH_RULE, *RE2_RULES],
            devices=["/dev/null"],
        ),
        _container("sleeper", SLEEP_COMMAND, [base_hash], signals=[15]),
        _container(
            "filler", FILL_COMMAND, [base_hash], mounts=[FILL_MOUNT], allow_stdio_access=True
        ),
        _container("two-layer", TRUE_COMMAND, [base_hash, extra_hash]),
    ]
    policy = {
        **demo,
        "containers": containers,
        "copy_file": {"destinations": ["/config/[a-z/]+"], "max_size": 65536},
        "debug_console": {"enabled": True, "commands": ["status", "containers"]},
    }
    return (json.dumps(policy, indent=2) + "\n").encode()


def build_world(base: Path) -> ReliabilityWorld:
    layer_dir = base / "layers"
    layer_dir.mkdir()
    image = assets.build_busybox_layer(layer_dir)
    extra_root = base / "extra-rootfs"
    (extra_root / "opt").mkdir(parents=True)
    (extra_root / "opt" / "extra.txt").write_text("a second layer\n")
    extra = build_layer(str(extra_root), str(layer_dir / "extra.layer"), work_dir=str(base))
    policy = base / "policy.json"
    policy.write_bytes(reliability_policy(image.root_hash, extra.root_hash))
    sim_state = base / "sim"
    sim_state.mkdir(mode=0o700)
    world = ReliabilityWorld(
        base,
        layer_dir,
        Path(image.path),
        Path(extra.path),
        image.root_hash,
        extra.root_hash,
        policy,
        measure(policy.read_bytes()).host_data_hex,
        sim_state,
    )
    # Make the simulator's keys now, once, rather than inside the first agent's start-up.
    with agent_with_policy(world) as agent, Client.connect(agent.uri) as client:
        assert client.status()["policy"]["state"] == "enforcing", agent.stderr_text()
    return world


@contextmanager
def agent_with_policy(world: ReliabilityWorld, *extra: str, **kw: Any) -> Iterator[AgentProcess]:
    with running_agent(*world.agent_args(*extra), **kw) as agent:
        yield agent


def copy_sim_state(world: ReliabilityWorld, target: Path) -> Path:
    """A private copy of the simulated chip, for tests that damage it."""
    shutil.copytree(world.sim_state, target)
    os.chmod(target, 0o700)
    return target


def prepare_overlay(client: Client, cid: str, layer_ids: tuple[str, ...] = ("base",)) -> None:
    """Scratch and overlay for `cid` (the layers must be mounted already)."""
    client.call("mount_scratch", {"container_id": cid})
    client.call("mount_overlay", {"container_id": cid, "layer_ids": list(layer_ids)})


def spec(
    args: list[str] | None = None, env: list[str] | None = None, **changes: Any
) -> dict[str, Any]:
    """A host spec for the policy's containers; `changes` replace top-level spec fields."""
    base = assets.host_spec(args or TRUE_COMMAND, env or [assets.PATH])
    base.update(changes)
    return base
