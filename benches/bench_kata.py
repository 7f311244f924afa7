"""create+start+wait of a `/bin/true` container over the Kata protocol (ttrpc, protobuf) vs the
native protocol (msgpack), against one agent process that serves both, in the same rounds.

Both paths do the same guest work: a memory scratch, an overlay on the (already mounted)
busybox layer, the policy decisions, runc create and start, the wait. The Kata side is
CreateContainer + StartContainer + WaitProcess; the native side is mount_scratch +
mount_overlay + create_container + start_container + wait_process. A long-running holder
container keeps the shared layer mounted, so neither side pays for verifying it.

    python benches/bench_kata.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent import REPO, TRUE, connect_when_ready
from _report import Row, markdown_table, median

from guestagent.demo import assets
from guestagent.kata.client import AGENT, KataClient
from guestagent.kata.pb import agent_pb2, oci_pb2
from guestagent.kata.rpc_containers import layer_id_for
from guestagent.policy.measure import measure

HOLD = ["/bin/sleep", "1000000"]
Empty = agent_pb2.DestroySandboxRequest  # an empty message parses google.protobuf.Empty


def policy(layer_hash: str) -> bytes:
    def container(name: str, command: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "layers": [layer_hash],
            "command": command,
            "env_rules": [{"pattern": assets.PATH, "strategy": "string", "required": True}],
            "no_new_privileges": True,
            "signals": [9],
            "hostname": "demo",  # the native spec's (assets.host_spec); the Kata one names none
        }

    document = {
        "version": 1,
        "containers": [container("true", TRUE), container("hold", HOLD)],
        "sandbox": {"id": "bench"},
    }
    return json.dumps(document).encode()


def kata_spec(args: list[str]) -> oci_pb2.Spec:
    caps = sorted(assets.CAPS)
    return oci_pb2.Spec(
        Version="1.0.2",
        Process=oci_pb2.Process(
            User=oci_pb2.User(),
            Args=args,
            Env=[assets.PATH],
            Cwd="/",
            Capabilities=oci_pb2.LinuxCapabilities(Bounding=caps, Effective=caps, Permitted=caps),
            NoNewPrivileges=True,
        ),
        Linux=oci_pb2.Linux(
            Namespaces=[
                oci_pb2.LinuxNamespace(Type=t) for t in ("pid", "network", "ipc", "uts", "mount")
            ]
        ),
    )


class Agent:
    """One agent process, both listeners, the policy adopted, the layer held by a container."""

    def __init__(self, work: Path) -> None:
        image = assets.build_busybox_layer(work / "layer")
        self.layer = image.path
        document = policy(image.root_hash)
        (work / "policy.json").write_bytes(document)
        (work / "sim").mkdir(mode=0o700)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guestagent", "serve",
             "--listen", f"unix://{work / 'agent.sock'}", "--kata", f"unix://{work / 'kata.sock'}",
             "--state-dir", str(work / "state"), "--snp", "sim", "--sim-state", str(work / "sim"),
             "--sim-host-data", measure(document).host_data_hex,
             "--policy", str(work / "policy.json"), "--layer-dir", str(work / "layer"),
             "--log-level", "warning"],
            stderr=subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        self.native = connect_when_ready(str(work / "agent.sock"), self.process)
        self.loop = asyncio.new_event_loop()
        self.kata: KataClient = self.run(KataClient.connect(f"unix://{work / 'kata.sock'}"))
        self.rpc("CreateSandbox", agent_pb2.CreateSandboxRequest(sandbox_id="bench"))
        self.rpc("CreateContainer", self.create_request("hold", HOLD))
        self.rpc("StartContainer", agent_pb2.StartContainerRequest(container_id="hold"))
        self.layer_id = layer_id_for(self.layer)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def rpc(self, method: str, request: Any, response: type = Empty) -> Any:
        return self.run(self.kata.call(AGENT, method, request, response))

    def create_request(self, cid: str, args: list[str]) -> agent_pb2.CreateContainerRequest:
        storage = agent_pb2.Storage(driver="blk", source=self.layer, fstype="erofs")
        return agent_pb2.CreateContainerRequest(
            container_id=cid, storages=[storage], OCI=kata_spec(args)
        )

    def kata_cycle(self) -> tuple[float, float]:
        began = time.perf_counter()
        self.rpc("CreateContainer", self.create_request("k", TRUE))
        self.rpc("StartContainer", agent_pb2.StartContainerRequest(container_id="k"))
        status = self.rpc("WaitProcess", agent_pb2.WaitProcessRequest(container_id="k"),
                          agent_pb2.WaitProcessResponse)  # fmt: skip
        ran = time.perf_counter() - began
        assert status.status == 0, status
        began = time.perf_counter()
        self.rpc("RemoveContainer", agent_pb2.RemoveContainerRequest(container_id="k"))
        return ran, time.perf_counter() - began

    def native_cycle(self) -> tuple[float, float]:
        call, cid = self.native.call, {"container_id": "n"}
        began = time.perf_counter()
        call("mount_scratch", cid)
        call("mount_overlay", {**cid, "layer_ids": [self.layer_id]})
        call("create_container", {**cid, "spec": assets.host_spec(TRUE, [assets.PATH])})
        call("start_container", cid)
        code = call("wait_process", {**cid, "timeout": 30})
        ran = time.perf_counter() - began
        assert code == {"exit_code": 0}, code
        began = time.perf_counter()
        call("delete_container", cid)
        call("unmount_overlay", cid)
        call("unmount_scratch", cid)
        return ran, time.perf_counter() - began

    def close(self) -> None:
        self.run(self.kata.close())
        self.loop.close()
        self.native.close()
        self.process.terminate()
        self.process.wait(timeout=60)


def measure_rounds(rounds: int) -> dict[str, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="ga-bench-kata-"))
    agent = Agent(work)
    try:
        agent.kata_cycle()  # warm-up
        agent.native_cycle()
        times: dict[str, list[float]] = {k: [] for k in ("kata", "kata_rm", "native", "native_rm")}
        for _ in range(rounds):
            ran, removed = agent.kata_cycle()
            times["kata"].append(ran)
            times["kata_rm"].append(removed)
            ran, removed = agent.native_cycle()
            times["native"].append(ran)
            times["native_rm"].append(removed)
        return times
    finally:
        agent.close()
        shutil.rmtree(work, ignore_errors=True)


def rows(rounds: int = 20) -> list[Row]:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        return [Row("kata protocol", "skipped: needs root and runc", "", "", None)]
    t = {k: median(v) * 1000 for k, v in measure_rounds(rounds).items()}
    return [
        Row(
            "kata protocol",
            f"`/bin/true` CreateContainer+StartContainer+WaitProcess over ttrpc, p50 of {rounds}",
            f"{t['kata']:.1f} ms",
            f"native scratch+overlay+create+start+wait {t['native']:.1f} ms",
            t["kata"] / t["native"],
            "lower",
        ),
        Row(
            "kata protocol",
            "RemoveContainer (delete, unmount overlay and scratch), p50",
            f"{t['kata_rm']:.1f} ms",
            f"native delete+unmounts {t['native_rm']:.1f} ms",
            t["kata_rm"] / t["native_rm"],
            "lower",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=20)
    print(markdown_table(rows(parser.parse_args().rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
