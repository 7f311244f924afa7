"""create+start+wait of a trivial container through a real agent, vs runc alone on its bundle.

The agent runs as a process (simulated SNP, the policy adopted through HOST_DATA, the busybox
layer mounted verified, an overlay on scratch); the host side speaks the protocol. The
baselines reuse the very config.json the agent wrote (same overlay rootfs, its own cgroup) and
run in the same rounds, alternating with the agent: `runc run`, and `runc create` + `runc start`
(the two runtime calls the agent's create and start make) with a wait for the init to exit.

    python benches/bench_agent_containers.py [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent import TRUE, build_assets, connect_when_ready, start_agent
from _report import Row, markdown_table, median

from guestagent.demo import assets

CID = "bench"


class AgentUnderTest:
    """An agent process with the policy adopted and one container's overlay ready."""

    def __init__(self, work: Path) -> None:
        prepared = build_assets(work)
        self.process = start_agent(work, prepared)
        self.client = connect_when_ready(str(work / "agent.sock"), self.process)
        self.client.call("mount_layer", {"layer_id": "base", "source": prepared.layer})
        self.client.call("mount_scratch", {"container_id": CID})
        self.client.call("mount_overlay", {"container_id": CID, "layer_ids": ["base"]})

    def cycle(self) -> tuple[float, float, dict[str, Any]]:
        """(create+start+wait seconds, delete seconds, the bundle config the agent wrote)."""
        spec = assets.host_spec(TRUE, [assets.PATH])
        began = time.perf_counter()
        created = self.client.call("create_container", {"container_id": CID, "spec": spec})
        self.client.call("start_container", {"container_id": CID})
        code = self.client.call("wait_process", {"container_id": CID, "timeout": 30})
        ran = time.perf_counter() - began
        assert code == {"exit_code": 0}, code
        config = json.loads((Path(created["bundle"]) / "config.json").read_text())
        began = time.perf_counter()
        self.client.call("delete_container", {"container_id": CID})
        return ran, time.perf_counter() - began, config

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=60)


class Runc:
    def __init__(self, work: Path, config: dict[str, Any]) -> None:
        self.binary = shutil.which("runc") or "runc"
        self.root = work / "runc-root"
        self.bundle = work / "baseline"
        self.bundle.mkdir()
        config = {**config, "linux": {**config["linux"], "cgroupsPath": "/ga-bench/baseline"}}
        (self.bundle / "config.json").write_text(json.dumps(config))
        self.null = os.open(os.devnull, os.O_RDWR)

    def _runc(self, *args: str) -> None:
        """posix_spawn, as the agent's reaper does: the cheapest way to run runc at all.

        stderr goes to a file: the container inherits it, and a pipe could outlive runc."""
        with open(self.bundle / "runc.err", "w+b") as err:
            pid = os.posix_spawn(
                self.binary,
                [self.binary, "--root", str(self.root), *args],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self.null, 0),
                    (os.POSIX_SPAWN_DUP2, self.null, 1),
                    (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
                ],
            )
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                err.seek(0)
                raise RuntimeError(f"runc {args[0]} failed: {err.read()[-2000:]!r}")

    def run(self, cid: str) -> float:
        began = time.perf_counter()
        self._runc("run", "--bundle", str(self.bundle), cid)
        elapsed = time.perf_counter() - began
        self._runc("delete", "--force", cid)
        return elapsed

    def create_start(self, cid: str) -> float:
        pid_file = self.bundle / "init.pid"
        began = time.perf_counter()
        self._runc("create", "--bundle", str(self.bundle), "--pid-file", str(pid_file), cid)
        pidfd = os.pidfd_open(int(pid_file.read_text()))
        self._runc("start", cid)
        select.select([pidfd], [], [], 30)  # readable once the init has exited
        elapsed = time.perf_counter() - began
        os.close(pidfd)
        self._runc("delete", "--force", cid)
        pid_file.unlink()
        return elapsed


def measure_rounds(rounds: int) -> dict[str, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="ga-bench-ctr-"))
    agent = AgentUnderTest(work)
    try:
        _, _, config = agent.cycle()  # warm-up, and the bundle the baselines reuse
        runc = Runc(work, config)
        runc.run("warm")
        times: dict[str, list[float]] = {"agent": [], "delete": [], "run": [], "create_start": []}
        for i in range(rounds):
            times["run"].append(runc.run(f"run{i}"))
            ran, deleted, _ = agent.cycle()
            times["agent"].append(ran)
            times["delete"].append(deleted)
            times["create_start"].append(runc.create_start(f"cs{i}"))
        return times
    finally:
        agent.close()
        shutil.rmtree(work, ignore_errors=True)


def rows(rounds: int = 20) -> list[Row]:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        return [Row("containers", "skipped: needs root and runc", "", "", None)]
    times = {k: median(v) * 1000 for k, v in measure_rounds(rounds).items()}
    return [
        Row(
            "containers",
            f"`/bin/true` create+start+wait over the protocol, p50 of {rounds}",
            f"{times['agent']:.1f} ms",
            f"`runc run` on the agent's bundle {times['run']:.1f} ms",
            times["agent"] / times["run"],
            "lower",
        ),
        Row(
            "containers",
            "same, against the two calls the agent makes",
            f"{times['agent']:.1f} ms",
            f"`runc create` + `runc start` + wait {times['create_start']:.1f} ms",
            times["agent"] / times["create_start"],
            "lower",
        ),
        Row(
            "containers",
            "delete_container (runc delete, bundle, cgroup), p50",
            f"{times['delete']:.1f} ms",
            "",
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=20)
    print(markdown_table(rows(parser.parse_args().rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
