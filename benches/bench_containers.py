"""create+start+wait of a trivial container (/bin/true): the agent's manager vs plain `runc run`.

Both run in the same process and the same run, on the same busybox rootfs and equivalent
bundles (the manager's own config.json is reused for the baseline), alternating so that machine
noise hits both alike. Target: the manager adds at most 15%. A third line times the two runtime
calls the lifecycle needs (`create`, then `start`: the agent's create and start are separate
operations) without the manager, to separate our overhead from the second runtime process.

    python benches/bench_containers.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "containers"))

from container_rootfs import build_busybox_rootfs, bundle_for, host_spec  # noqa: E402

from guestagent.containers.manager import ContainerManager  # noqa: E402
from guestagent.containers.reaper import Reaper  # noqa: E402


async def through_manager(manager: ContainerManager, rootfs: Path, cid: str) -> float:
    config = bundle_for(host_spec(["/bin/true"]), str(rootfs), manager.cgroups_path(cid))
    began = time.perf_counter()
    await manager.create(cid, config)
    await manager.start(cid)
    code = await manager.wait(cid, timeout=30)
    elapsed = time.perf_counter() - began
    assert code == 0, code
    await manager.delete(cid)
    return elapsed


async def plain_runc(manager: ContainerManager, bundle: Path, cid: str) -> float:
    began = time.perf_counter()
    code = await manager.runtime.run(cid, str(bundle))
    elapsed = time.perf_counter() - began
    assert code == 0, code
    await manager.runtime.delete(cid, force=True)
    return elapsed


async def runc_create_start(manager: ContainerManager, bundle: Path, cid: str) -> float:
    """The same two runtime calls the lifecycle needs, without the manager around them."""
    null = os.open(os.devnull, os.O_RDWR)
    pid_file = bundle / f"{cid}.pid"
    began = time.perf_counter()
    try:
        await manager.runtime.create(cid, str(bundle), str(pid_file), stdio=(null, null, null))
    finally:
        os.close(null)
    status = manager.reaper.watch(int(pid_file.read_text()))
    await manager.runtime.start(cid)
    await status
    elapsed = time.perf_counter() - began
    await manager.runtime.delete(cid, force=True)
    pid_file.unlink()
    return elapsed


def summary(name: str, samples: list[float]) -> str:
    mean, p50 = statistics.mean(samples), statistics.median(samples)
    return f"{name:<22} n={len(samples):<3} mean={mean * 1000:7.2f} ms  p50={p50 * 1000:7.2f} ms"


async def main(rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    try:
        rootfs = build_busybox_rootfs(work / "rootfs")
        reaper = Reaper()
        reaper.install()
        manager = ContainerManager(reaper, work / "state", cgroup_parent="ga-bench")
        baseline_bundle = work / "baseline"
        baseline_bundle.mkdir()
        config = bundle_for(host_spec(["/bin/true"]), str(rootfs), "/ga-bench/baseline")
        (baseline_bundle / "config.json").write_text(json.dumps(config))
        ours, theirs, two_calls = [], [], []
        await through_manager(manager, rootfs, "warmup")  # first-run page cache effects
        for i in range(rounds):
            theirs.append(await plain_runc(manager, baseline_bundle, f"base-{i}"))
            ours.append(await through_manager(manager, rootfs, f"ours-{i}"))
            two_calls.append(await runc_create_start(manager, baseline_bundle, f"two-{i}"))
        await manager.shutdown()
        reaper.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(summary("runc run (baseline)", theirs))
    print(summary("runc create + start", two_calls))
    print(summary("ContainerManager", ours))
    ratio_mean = statistics.mean(ours) / statistics.mean(theirs)
    ratio_p50 = statistics.median(ours) / statistics.median(theirs)
    print(f"ratio manager/runc run: mean {ratio_mean:.3f}  p50 {ratio_p50:.3f}  (target <= 1.15)")
    own_mean = statistics.mean(ours) / statistics.mean(two_calls)
    own_p50 = statistics.median(ours) / statistics.median(two_calls)
    print(f"ratio manager/(runc create + start): mean {own_mean:.3f}  p50 {own_p50:.3f}")


if __name__ == "__main__":
    if os.geteuid() != 0 or shutil.which("runc") is None:
        sys.exit("needs root and runc")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
