"""Decision latency per enforcement point on policies of 1, 20 and 200 containers.

Prints p50/p99 of each storage and container point per policy size, plus a row against a
large engine state (100 created containers, 500 mounted devices) to show latency does not
grow with the state. Ratios are against two baselines measured in the same run: the engine's
cheapest point, get_properties (dispatch + input check + decision building only), and a
fixed engine-independent workload (deep-copying the create request) as a machine-speed scale.
Target (issue 4): create_container p50 < 20 us and p99 < 100 us on the 20-container policy.

    python benches/bench_policy.py [--iterations N]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guestagent.policy.document import parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.rules._match import DEFAULT_UNPRIVILEGED_CAPS
from guestagent.policy.state import EMPTY_STATE

CAPS = sorted(DEFAULT_UNPRIVILEGED_CAPS)


def _layer(i: int, j: int) -> str:
    return hashlib.sha256(f"{i}/{j}".encode()).hexdigest()


def policy_document(count: int, **global_flags: Any) -> dict[str, Any]:
    """`count` similar containers (each with four layers, env rules, a mount, an exec)."""
    containers = []
    for i in range(count):
        containers.append(
            {
                "name": f"app{i}",
                "layers": [_layer(i, j) for j in range(4)],
                "command": [f"/bin/app{i}", "--serve"],
                "env_rules": [
                    {
                        "pattern": "PATH=/usr/local/bin:/usr/bin:/bin",
                        "strategy": "string",
                        "required": True,
                    },
                    {"pattern": "PORT=[0-9]{1,5}", "strategy": "re2"},
                    {"pattern": "LOG_LEVEL=(debug|info|warn|error)", "strategy": "re2"},
                    {"pattern": "HOSTNAME=[a-z0-9-]{1,63}", "strategy": "re2"},
                    {"pattern": "TZ=UTC", "strategy": "string"},
                ],
                "working_dir": "/srv",
                "user": {"uid": 1000, "gid": 1000, "additional_gids": []},
                "mounts": [
                    {
                        "type": "bind",
                        "source": "/run/scratch/[0-9a-f]{8}/data",
                        "destination": "/data",
                        "options": ["rbind", "rw"],
                    }
                ],
                "exec_processes": [{"command": ["/bin/health"], "signals": [15]}],
                "signals": [15],
            }
        )
    return {"version": 1, "containers": containers, **global_flags}


def build_policy(count: int) -> Any:
    return parse_policy(json.dumps(policy_document(count)).encode())


def create_request(index: int) -> dict[str, Any]:
    return {
        "container_id": "c1",
        "argv": [f"/bin/app{index}", "--serve"],
        "env": [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "PORT=8080",
            "LOG_LEVEL=info",
            "HOSTNAME=web-7f9c",
            "TZ=UTC",
        ],
        "working_dir": "/srv",
        "user": {"uid": 1000, "gid": 1000, "additional_gids": []},
        "capabilities": {
            "bounding": CAPS,
            "effective": CAPS,
            "inheritable": [],
            "permitted": CAPS,
            "ambient": [],
        },
        "no_new_privileges": True,
        "seccomp_profile_sha256": "",
        "mounts": [
            {
                "destination": "/data",
                "source": "/run/scratch/0123abcd/data",
                "type": "bind",
                "options": ["rw", "rbind"],
            },
            {
                "destination": "/proc",
                "source": "proc",
                "type": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/dev",
                "source": "tmpfs",
                "type": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
        ],
        "namespaces": ["pid", "ipc", "uts", "mount", "network"],
        "hooks": False,
        "devices": [],
        "sysctl": {},
        "terminal": False,
        "rootfs": "/run/rootfs/c1",
        "privileged": False,
        "privileged_reasons": [],
        "host_namespaces": [],
        "joins": {},
        "unsupported_fields": [],
        "umask": None,
        "hostname": "",
        "readonly_rootfs": False,
        "masked_paths": [],
        "readonly_paths": [],
        "rlimits": [],
        "oom_score_adj": None,
        "resources": {},
        "device_conflicts": [],
    }


def _allowed(policy: Any, state: Any, point: str, request: dict[str, Any]) -> Any:
    decision = decide(policy, state, point, request)
    assert decision.allowed, decision
    return decision.next_state.after


def _mount_container(policy: Any, state: Any, cid: str, index: int) -> Any:
    """Mount policy container `index`'s layers and overlay for `cid`; create and start it."""
    paths = []
    for j, digest in enumerate(policy.containers[index].layers):
        paths.append(f"/run/layers/{cid}/{j}")
        state = _allowed(
            policy, state, "mount_device", {"target": paths[-1], "device_hash": digest}
        )
    overlay = {"container_id": cid, "layer_paths": paths, "target": f"/run/rootfs/{cid}"}
    return _allowed(policy, state, "mount_overlay", overlay)


def large_state(policy: Any) -> Any:
    """100 created, started containers with one exec'd process each; 500 mounted devices."""
    state = EMPTY_STATE
    count = len(policy.containers)
    for k in range(100):
        cid = f"bg{k}"
        state = _mount_container(policy, state, cid, k % count)
        request = create_request(k % count)
        request.update(container_id=cid, rootfs=f"/run/rootfs/{cid}")
        state = _allowed(policy, state, "create_container", request)
        state = _allowed(policy, state, "start_container", {"container_id": cid})
        state = _allowed(policy, state, "exec_in_container", exec_request(cid))
    for k in range(500 - 4 * 100):
        digest = policy.containers[k % count].layers[0]
        mount = {"target": f"/run/extra/{k}", "device_hash": digest}
        state = _allowed(policy, state, "mount_device", mount)
    assert len(state.devices) == 500 and len(state.created) == 100
    return state


def exec_request(cid: str) -> dict[str, Any]:
    return {
        "container_id": cid,
        "argv": ["/bin/health"],
        "env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
        "working_dir": "/srv",
        "user": {"uid": 1000, "gid": 1000, "additional_gids": []},
        "capabilities": {
            "bounding": CAPS,
            "effective": CAPS,
            "inheritable": [],
            "permitted": CAPS,
            "ambient": [],
        },
        "no_new_privileges": True,
        "terminal": False,
        "umask": None,
    }


def scenarios(policy: Any, base: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """(point, state, request) for each point, each allowed, the container under test "c1"."""
    index = len(policy.containers) // 2
    layers = policy.containers[index].layers
    spare = {"target": "/run/layers/spare", "device_hash": layers[0]}
    base = _allowed(policy, base, "mount_device", spare)
    devices = base
    for j, digest in enumerate(layers):
        mount = {"target": f"/run/layers/c1/{j}", "device_hash": digest}
        devices = _allowed(policy, devices, "mount_device", mount)
    paths = [f"/run/layers/c1/{j}" for j in range(len(layers))]
    overlay_req = {"container_id": "c1", "layer_paths": paths, "target": "/run/rootfs/c1"}
    overlaid = _allowed(policy, devices, "mount_overlay", overlay_req)
    created = _allowed(policy, overlaid, "create_container", create_request(index))
    started = _allowed(policy, created, "start_container", {"container_id": "c1"})
    execd = _allowed(policy, started, "exec_in_container", exec_request("c1"))
    signal = {"container_id": "c1", "signal": 15, "is_init": True, "argv": []}
    return [
        ("mount_device", base, {"target": "/run/layers/new", "device_hash": layers[1]}),
        ("unmount_device", base, {"target": "/run/layers/spare"}),
        ("mount_scratch", base, {"target": "/run/scratch/new", "encrypted": True}),
        ("mount_overlay", devices, overlay_req),
        ("unmount_overlay", overlaid, {"target": "/run/rootfs/c1"}),
        ("create_container", overlaid, create_request(index)),
        ("start_container", created, {"container_id": "c1"}),
        ("exec_in_container", started, exec_request("c1")),
        ("signal_container_process", execd, signal),
        ("shutdown_container", execd, {"container_id": "c1"}),
    ]


def measure(fn: Any, iterations: int) -> tuple[float, float]:
    for _ in range(min(1000, iterations)):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append(clock() - start)
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    return p50, p99


def _row(label: str, p50: float, p99: float, base: float, ref: float, note: str = "") -> None:
    print(
        f"{label:44s} p50 {p50:7.2f} us  p99 {p99:7.2f} us"
        f"  {p50 / base:5.2f}x props {p50 / ref:5.2f}x ref  {note}".rstrip()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10000)
    args = parser.parse_args()
    n = args.iterations
    base_policy = build_policy(1)
    ref_request = create_request(0)
    ref50, ref99 = measure(lambda: copy.deepcopy(ref_request), n)
    base50, base99 = measure(lambda: decide(base_policy, EMPTY_STATE, "get_properties", {}), n)
    _row("reference: deepcopy(create request)", ref50, ref99, base50, ref50)
    _row("baseline: get_properties (denied)", base50, base99, base50, ref50)
    rows: list[tuple[str, Any, Any]] = []
    for count in (1, 20, 200):
        policy = build_policy(count)
        rows.append((f"{count} containers", policy, EMPTY_STATE))
    policy20 = rows[1][1]
    rows.append(("20 containers, large state", policy20, large_state(policy20)))
    for label, policy, state in rows:
        print(f"-- policy of {label}")
        for point, before, request in scenarios(policy, state):
            p50, p99 = measure(lambda p=policy, s=before, r=request, q=point: decide(p, s, q, r), n)
            note = ""
            if point == "create_container":
                note = "ok" if p50 < 20 and p99 < 100 else "OVER TARGET"
            _row(f"  {point}", p50, p99, base50, ref50, note)
    denied = create_request(10)
    denied["env"] = [*denied["env"], "LD_PRELOAD=/tmp/x.so"]
    state = scenarios(policy20, EMPTY_STATE)[5][1]
    p50, p99 = measure(lambda: decide(policy20, state, "create_container", denied), n)
    print("-- denials, policy of 20 containers")
    _row("  create_container (env)", p50, p99, base50, ref50)
    bad = create_request(10)
    bad["user"] = {"uid": "0"}
    p50, p99 = measure(lambda: decide(policy20, state, "create_container", bad), n)
    _row("  create_container (malformed input)", p50, p99, base50, ref50)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
