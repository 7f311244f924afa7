"""What a hanging runtime costs requests about other containers.

The agent's runtime is a script in front of runc that holds `start` of one container ("held")
until the bench lets it go (at most `--hold` seconds). While it is held, the bench times
requests about another container: a storage cycle (mount_scratch, mount_overlay and their
unmounts: decisions that change the policy state) and a container cycle (create, start,
wait, delete of /bin/true), and reports the slowest of each (a request that waits for the
hold waits once). Baseline, in the same run and agent: the same cycles with nothing
held. `--compare DIR` runs the same against the checkout in DIR (e.g. main before a change).

    python benches/bench_lock_scope.py [--rounds 5] [--hold 10] [--compare DIR]
"""

from __future__ import annotations

import argparse
import shutil
import stat
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _agent import REPO, TRUE, build_assets, connect_when_ready, start_agent
from _report import Row, markdown_table

from guestagent.client import Client
from guestagent.demo import assets
from guestagent.protocol.messages import encode_request


def held_runtime(work: Path, hold: float) -> Path:
    script = work / "held-runc"
    script.write_text(
        "#!/bin/sh\n"
        "verb= id=\n"
        'for a in "$@"; do [ "$a" = start ] && verb=1; [ "$a" = held ] && id=1; done\n'
        'if [ -n "$verb" ] && [ -n "$id" ]; then\n'
        f"  i=0; while [ ! -e {work}/release ] && [ $i -lt {int(hold * 10)} ]; do\n"
        "    sleep 0.1; i=$((i+1)); done\n"
        "fi\n"
        f'exec {shutil.which("runc")} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def storage_cycle(client: Client, cid: str) -> float:
    began = time.perf_counter()
    client.call("mount_scratch", {"container_id": cid})
    client.call("mount_overlay", {"container_id": cid, "layer_ids": ["base"]})
    client.call("unmount_overlay", {"container_id": cid})
    client.call("unmount_scratch", {"container_id": cid})
    return time.perf_counter() - began


def container_cycle(client: Client, cid: str) -> float:
    spec = assets.host_spec(TRUE, [assets.PATH])
    client.call("mount_scratch", {"container_id": cid})
    client.call("mount_overlay", {"container_id": cid, "layer_ids": ["base"]})
    began = time.perf_counter()
    client.call("create_container", {"container_id": cid, "spec": spec})
    client.call("start_container", {"container_id": cid})
    assert client.call("wait_process", {"container_id": cid, "timeout": 60}) == {"exit_code": 0}
    client.call("delete_container", {"container_id": cid})
    took = time.perf_counter() - began
    client.call("unmount_overlay", {"container_id": cid})
    client.call("unmount_scratch", {"container_id": cid})
    return took


def measure(repo: Path, rounds: int, hold: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ga-lock-") as tmp:
        work = Path(tmp)
        prepared = build_assets(work / "assets")
        runtime = held_runtime(work, hold)
        cgroups = f"ga-bench-lock-{work.name}"
        extra = ("--runtime", str(runtime), "--cgroup-parent", cgroups)
        process = start_agent(work, prepared, "agent", repo=repo, extra=extra)
        try:
            client = connect_when_ready(str(work / "agent.sock"), process)
            client.call("mount_layer", {"layer_id": "base", "source": prepared.layer})
            results: dict[str, list[float]] = {}
            for phase in ("idle", "held"):
                if phase == "held":
                    client.call("mount_scratch", {"container_id": "held"})
                    client.call("mount_overlay", {"container_id": "held", "layer_ids": ["base"]})
                    spec = assets.host_spec(TRUE, [assets.PATH])
                    client.call("create_container", {"container_id": "held", "spec": spec})
                    payload = encode_request(9999, "start_container", {"container_id": "held"})
                    client.send_raw(struct.pack(">I", len(payload)) + payload)
                    time.sleep(0.5)  # the runtime is holding `start` now
                other = Client.connect(f"unix://{work}/agent.sock")
                for index in range(rounds):
                    storage = storage_cycle(other, f"s-{phase}-{index}")
                    results.setdefault(f"storage {phase}", []).append(storage)
                    container = container_cycle(other, f"c-{phase}-{index}")
                    results.setdefault(f"container {phase}", []).append(container)
                other.close()
            (work / "release").touch()
            client.receive(9999)
            client.call("delete_container", {"container_id": "held"})
            client.close()
            return {name: max(values) for name, values in results.items()}  # the worst wait
        finally:
            (work / "release").touch()
            process.terminate()
            process.wait(timeout=60)


def rows(repo: Path, rounds: int, hold: float, label: str = "") -> list[Row]:
    figures = measure(repo, rounds, hold)
    out = []
    for cycle, what in (
        ("storage", "scratch+overlay mount and unmount"),
        ("container", "/bin/true create+start+wait+delete"),
    ):
        held, idle = figures[f"{cycle} held"], figures[f"{cycle} idle"]
        out.append(
            Row(
                "lock scope",
                f"{label}{what} of another container while `start` hangs, slowest of {rounds}",
                f"{held * 1000:,.1f} ms",
                f"the same with nothing held {idle * 1000:,.1f} ms",
                held / idle,
                "lower",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the runtime holds")
    parser.add_argument("--compare", type=Path, help="also run the checkout in this directory")
    options = parser.parse_args()
    table = rows(REPO, options.rounds, options.hold)
    if options.compare:
        table += rows(options.compare, options.rounds, options.hold, "compared checkout: ")
    print(markdown_table(table))


if __name__ == "__main__":
    main()
