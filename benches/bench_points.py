"""Decision latency at every enforcement point, on policies of 1, 20 and 200 containers.

Each point is timed on an allowed request in the state it needs (layers mounted, overlay
made, container created or started...), against the middle container of the policy, so the
engine has to look past half of them. Prints p50/p99 per size, and the growth from 1 to 200
containers (measured side by side in the same run).

    python benches/bench_points.py [--iterations N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Row, median, percentile
from bench_policy import _layer, create_request, policy_document

from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE, PolicyState

SIZES = (1, 20, 200)
COPY = {
    "destination": "/etc/app/x.conf",
    "mode": 0o644,
    "dir_mode": 0o755,
    "size": 9,
    "kind": "file",
    "target": "",
    "uid": 0,
    "gid": 0,
}
CID = "c1"
ROOTFS = f"/run/rootfs/{CID}"


def policy_of(count: int) -> Policy:
    """bench_policy's containers, plus the guest-wide permissions every point needs."""
    document = policy_document(
        count,
        allow_properties_access=True,
        network={"allow_network_changes": True, "interface_patterns": ["eth[0-9]"]},
        copy_file={"destinations": ["/etc/app/[a-z.]+"]},
    )
    return parse_policy(json.dumps(document).encode())


def _step(policy: Policy, state: PolicyState, point: str, request: dict[str, Any]) -> PolicyState:
    decision = decide(policy, state, point, request)
    assert decision.allowed, (point, decision.reason)
    return decision.next_state.after


def scenario(policy: Policy, index: int) -> dict[str, tuple[PolicyState, dict[str, Any]]]:
    """point -> (the state it is asked in, an allowed request)."""
    paths = [f"/run/layers/{j}" for j in range(4)]
    devices = [{"target": p, "device_hash": _layer(index, j)} for j, p in enumerate(paths)]
    layered = EMPTY_STATE
    for request in devices[:3]:
        layered = _step(policy, layered, "mount_device", request)
    mounted = _step(policy, layered, "mount_device", devices[3])
    overlay = {"container_id": CID, "layer_paths": paths, "target": ROOTFS}
    prepared = _step(policy, mounted, "mount_overlay", overlay)
    create = create_request(index)
    created = _step(policy, prepared, "create_container", create)
    started = _step(policy, created, "start_container", {"container_id": CID})
    exec_request = {k: create[k] for k in ("container_id", "env", "working_dir", "user")}
    exec_request.update(
        argv=["/bin/health"],
        capabilities=create["capabilities"],
        no_new_privileges=True,
        terminal=False,
        umask=None,
    )
    scratch = {"target": "/run/scratch/s1", "encrypted": True}
    with_scratch = _step(policy, EMPTY_STATE, "mount_scratch", scratch)
    signal = {"container_id": CID, "signal": 15, "is_init": True, "argv": create["argv"]}
    return {
        "get_properties": (EMPTY_STATE, {}),
        "mount_device": (layered, devices[3]),
        "unmount_device": (mounted, {"target": paths[3]}),
        "mount_overlay": (mounted, overlay),
        "unmount_overlay": (prepared, {"target": ROOTFS}),
        "mount_scratch": (EMPTY_STATE, scratch),
        "unmount_scratch": (with_scratch, {"target": scratch["target"]}),
        "create_container": (prepared, create),
        "start_container": (created, {"container_id": CID}),
        "exec_in_container": (started, exec_request),
        "signal_container_process": (started, signal),
        "shutdown_container": (started, {"container_id": CID}),
        "container_state": (started, {"container_id": CID}),
        "copy_file": (EMPTY_STATE, COPY),
        "network_change": (EMPTY_STATE, {"kind": "address", "interface": "eth0"}),
    }


def latencies(fn: Callable[[], Any], iterations: int) -> list[float]:
    """Per-call times in microseconds."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append((clock() - start) / 1000)
    return samples


def measure_points(iterations: int, rounds: int = 5) -> dict[str, dict[int, tuple[float, float]]]:
    """point -> size -> (p50 us, p99 us). Sizes take turns in rounds, so none is favoured by
    running first (warm caches, CPU clock) or last."""
    calls: dict[str, dict[int, Callable[[], Any]]] = {}
    for size in SIZES:
        policy = policy_of(size)
        for point, (state, request) in scenario(policy, size // 2).items():
            assert decide(policy, state, point, request).allowed, point
            calls.setdefault(point, {})[size] = lambda p=policy, s=state, q=point, r=request: (
                decide(p, s, q, r)
            )
    samples: dict[str, dict[int, list[float]]] = {p: {s: [] for s in SIZES} for p in calls}
    for point, by_size in calls.items():
        for fn in by_size.values():
            latencies(fn, min(500, iterations))  # warm-up
        for _ in range(rounds):
            for size, fn in by_size.items():
                samples[point][size] += latencies(fn, max(1, iterations // rounds))
    return {
        point: {size: (median(got), percentile(got, 0.99)) for size, got in by_size.items()}
        for point, by_size in samples.items()
    }


def rows(iterations: int = 5000) -> list[Row]:
    results = measure_points(iterations)
    table = []
    for point, by_size in results.items():
        p50s = " / ".join(f"{by_size[s][0]:.1f}" for s in SIZES)
        p99s = " / ".join(f"{by_size[s][1]:.1f}" for s in SIZES)
        table.append(
            Row(
                "policy",
                f"`{point}` p50 \\| p99 at 1 / 20 / 200 containers",
                f"{p50s} \\| {p99s} µs",
                f"itself at 1 container: p50 {by_size[1][0]:.1f} µs",
                by_size[SIZES[-1]][0] / by_size[1][0],
                "lower",
            )
        )
    cheapest = results["get_properties"][20][0]
    create = results["create_container"][20][0]
    table.append(
        Row(
            "policy",
            "`create_container` p50 vs the cheapest point, 20 containers",
            f"{create:.1f} µs",
            f"`get_properties` p50 {cheapest:.1f} µs",
            create / cheapest,
            "lower",
        )
    )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    from _report import markdown_table

    print(markdown_table(rows(args.iterations)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
