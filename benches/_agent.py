"""A real agent process for the benches: simulated SNP, a policy adopted through HOST_DATA,
a verified busybox layer it may mount."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from guestagent.client import Client
from guestagent.demo import assets
from guestagent.policy.measure import measure

__all__ = ["REPO", "TRUE", "AgentAssets", "build_assets", "connect_when_ready", "start_agent"]

TRUE = ["/bin/true"]
# Agents run from the checkout under test, whatever else is installed.
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AgentAssets:
    layer: str
    layer_dir: Path
    policy: Path
    host_data: str
    sim_state: Path


def bench_policy(layer_hash: str) -> bytes:
    container = {
        "name": "true",
        "layers": [layer_hash],
        "command": TRUE,
        "env_rules": [{"pattern": assets.PATH, "strategy": "string", "required": True}],
        "no_new_privileges": True,
        "hostname": "demo",  # the one assets.host_spec names (the policy rules on it now)
    }
    return json.dumps(
        {"version": 1, "containers": [container], "allow_properties_access": True}
    ).encode()


def build_assets(work: Path) -> AgentAssets:
    image = assets.build_busybox_layer(work / "layer")
    policy = work / "policy.json"
    policy.write_bytes(bench_policy(image.root_hash))
    (work / "sim").mkdir(mode=0o700)
    host_data = measure(policy.read_bytes()).host_data_hex
    return AgentAssets(image.path, work / "layer", policy, host_data, work / "sim")


def start_agent(work: Path, agent: AgentAssets, name: str = "agent") -> subprocess.Popen[bytes]:
    socket = work / f"{name}.sock"
    return subprocess.Popen(
        [sys.executable, "-m", "guestagent", "serve", "--listen", f"unix://{socket}",
         "--state-dir", str(work / f"{name}-state"), "--snp", "sim",
         "--sim-state", str(agent.sim_state), "--sim-host-data", agent.host_data,
         "--policy", str(agent.policy), "--layer-dir", str(agent.layer_dir),
         "--log-level", "warning"],
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )  # fmt: skip


def connect_when_ready(path: str, process: subprocess.Popen[bytes], timeout: float = 60) -> Client:
    """A client, once the agent accepts and has answered hello."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode}")
        try:
            return Client.connect(f"unix://{path}")
        except OSError:
            time.sleep(0.005)
    raise TimeoutError("agent did not start")
