"""create+start+wait of a trivial container through a real agent, vs the runtime alone on its
bundle; the agent once with runc and once with crun (`serve --runtime`).

Each agent runs as a process (simulated SNP, the policy adopted through HOST_DATA, the busybox
layer mounted verified, an overlay on scratch); the host side speaks the protocol. The
baselines reuse the very config.json the agent wrote (same overlay rootfs, its own cgroup) and
run in the same rounds, alternating with the agents: `runc run` and `crun run`, and
`create` + `start` (the two runtime calls the agent's create and start make) with a wait for
the init to exit, for each runtime.

crun 1.8 refuses a hybrid cgroup host whose unified hierarchy still holds a controller (this
development machine); there the whole measurement runs in a private mount namespace that hides
the unified mount, so both runtimes see a plain cgroup v1 host. The guest is pure v2.

    python benches/bench_agent_containers.py [-n 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent import TRUE, AgentAssets, build_assets, connect_when_ready, start_agent
from _report import Row, markdown_table, median

from guestagent.demo import assets

CID = "bench"
RUNTIMES = ("runc", "crun")
HIDE_UNIFIED = 'mount -t tmpfs -o size=64k none /sys/fs/cgroup/unified && exec "$0" "$@"'


class AgentUnderTest:
    """An agent process driving `runtime`, the policy adopted, one container's overlay ready."""

    def __init__(self, work: Path, prepared: AgentAssets, runtime: str) -> None:
        binary = shutil.which(runtime) or runtime
        cgroups = f"ga-bench-{os.getpid()}-{runtime}"  # the two agents' containers never meet
        extra = ("--runtime", binary, "--cgroup-parent", cgroups)
        self.process = start_agent(work, prepared, runtime, extra=extra)
        self.client = connect_when_ready(str(work / f"{runtime}.sock"), self.process)
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


class Runtime:
    """The runtime alone, on a copy of the agent's bundle."""

    def __init__(self, work: Path, config: dict[str, Any], name: str) -> None:
        self.name = name
        self.binary = shutil.which(name) or name
        self.root = work / f"{name}-root"
        self.bundle = work / f"baseline-{name}"
        self.bundle.mkdir()
        cgroup = f"/ga-bench-{os.getpid()}/{name}"
        config = {**config, "linux": {**config["linux"], "cgroupsPath": cgroup}}
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
                raise RuntimeError(f"{self.name} {args[0]} failed: {err.read()[-2000:]!r}")

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
    prepared = build_assets(work)
    agents = {name: AgentUnderTest(work, prepared, name) for name in RUNTIMES}
    try:
        _, _, config = agents["runc"].cycle()  # warm-up, and the bundle the baselines reuse
        agents["crun"].cycle()
        alone = {name: Runtime(work, config, name) for name in RUNTIMES}
        for runtime in alone.values():
            runtime.run("warm")
        times: dict[str, list[float]] = {}
        for i in range(rounds):
            for name in RUNTIMES:
                times.setdefault(f"{name} run", []).append(alone[name].run(f"run{i}"))
                ran, deleted, _ = agents[name].cycle()
                times.setdefault(f"agent {name}", []).append(ran)
                times.setdefault(f"delete {name}", []).append(deleted)
                cs = alone[name].create_start(f"cs{i}")
                times.setdefault(f"{name} create_start", []).append(cs)
        return times
    finally:
        for agent in agents.values():
            agent.close()
        shutil.rmtree(work, ignore_errors=True)
        remove_cgroups(f"ga-bench-{os.getpid()}")


def remove_cgroups(prefix: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """rmdir every cgroup named `prefix`* (the baselines' `/ga-bench-<pid>` and each agent's
    `--cgroup-parent`), deepest first, in every hierarchy: the runtimes remove a container's
    own cgroup, never the parents its cgroupsPath named. Only empty ones go (rmdir)."""
    for top in root.glob(f"*/{prefix}*"):
        nested = [path for path in top.rglob("*") if path.is_dir()]
        for path in [*sorted(nested, key=lambda path: len(path.parts), reverse=True), top]:
            with contextlib.suppress(OSError):
                path.rmdir()


def hybrid_with_unified_controllers() -> bool:
    try:
        return bool(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split())
    except OSError:
        return False


def measure(rounds: int) -> dict[str, float]:
    """p50 ms of each series; in a mount namespace without the unified hierarchy if needed."""
    if not hybrid_with_unified_controllers():
        return {k: median(v) * 1000 for k, v in measure_rounds(rounds).items()}
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_UNIFIED]
    argv += [sys.executable, __file__, "--rounds", str(rounds), "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"containers bench failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def rows(rounds: int = 20) -> list[Row]:
    if os.geteuid() != 0 or not all(shutil.which(name) for name in RUNTIMES):
        return [Row("containers", "skipped: needs root, runc and crun", "", "", None)]
    t = measure(rounds)
    out = []
    for name in RUNTIMES:
        agent = t[f"agent {name}"]
        out += [
            Row(
                "containers",
                f"`/bin/true` create+start+wait over the protocol, agent with {name}, "
                f"p50 of {rounds}",
                f"{agent:.1f} ms",
                f"`runc run` on the agent's bundle {t['runc run']:.1f} ms",
                agent / t["runc run"],
                "lower",
            ),
            *(
                [
                    Row(
                        "containers",
                        f"same (agent with {name}), against `{name} run`",
                        f"{agent:.1f} ms",
                        f"`{name} run` {t[f'{name} run']:.1f} ms",
                        agent / t[f"{name} run"],
                        "lower",
                    )
                ]
                if name != "runc"  # the row above
                else []
            ),
            Row(
                "containers",
                f"same (agent with {name}), against the two calls it makes",
                f"{agent:.1f} ms",
                f"`{name} create` + `{name} start` + wait {t[f'{name} create_start']:.1f} ms",
                agent / t[f"{name} create_start"],
                "lower",
            ),
            Row(
                "containers",
                f"delete_container ({name} delete, bundle, cgroup), p50",
                f"{t[f'delete {name}']:.1f} ms",
                "",
                None,
            ),
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="p50 ms of each series, as JSON")
    args = parser.parse_args()
    if args.json:
        times = measure_rounds(args.rounds)
        print(json.dumps({k: median(v) * 1000 for k, v in times.items()}))
    else:
        print(markdown_table(rows(args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
