"""Decision latency of create_container on policies of 1, 20 and 200 containers.

Prints p50/p99 per policy size, against a baseline measured in the same run (the engine's
cheapest point, get_properties, which is dispatch + input check + decision building only).
Target: p50 < 20 us and p99 < 100 us on the 20-container policy.

    python benches/bench_policy.py [--iterations N]
"""

from __future__ import annotations

import argparse
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


def build_policy(count: int) -> Any:
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
                "exec_processes": [{"command": ["/bin/health"]}],
                "signals": [15],
            }
        )
    return parse_policy(json.dumps({"version": 1, "containers": containers}).encode())


def prepared_state(policy: Any, index: int) -> Any:
    state = EMPTY_STATE
    paths = []
    for j, digest in enumerate(policy.containers[index].layers):
        path = f"/run/layers/{j}"
        state = decide(
            policy, state, "mount_device", {"target": path, "device_hash": digest}
        ).next_state.after
        paths.append(path)
    overlay = {"container_id": "c1", "layer_paths": paths, "target": "/run/rootfs/c1"}
    return decide(policy, state, "mount_overlay", overlay).next_state.after


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
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    base_policy = build_policy(1)
    base_p50, base_p99 = measure(
        lambda: decide(base_policy, EMPTY_STATE, "get_properties", {}), args.iterations
    )
    print(f"baseline get_properties           p50 {base_p50:7.2f} us  p99 {base_p99:7.2f} us")
    for count in (1, 20, 200):
        policy = build_policy(count)
        index = count // 2
        state = prepared_state(policy, index)
        request = create_request(index)
        assert decide(policy, state, "create_container", request).allowed
        p50, p99 = measure(
            lambda p=policy, s=state, r=request: decide(p, s, "create_container", r),
            args.iterations,
        )
        verdict = "ok" if (p50 < 20 and p99 < 100) else "OVER TARGET"
        print(
            f"create_container {count:4d} containers  p50 {p50:7.2f} us  p99 {p99:7.2f} us"
            f"  ({p50 / base_p50:5.1f}x baseline p50)  {verdict}"
        )
    denied = create_request(10)
    denied["env"] = [*denied["env"], "LD_PRELOAD=/tmp/x.so"]
    policy = build_policy(20)
    state = prepared_state(policy, 10)
    p50, p99 = measure(lambda: decide(policy, state, "create_container", denied), args.iterations)
    print(f"create_container   20 denied (env) p50 {p50:7.2f} us  p99 {p99:7.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
