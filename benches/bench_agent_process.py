"""Agent start-to-ready time, and its idle and loaded RSS, against a bare server's.

Start-to-ready: from process spawn until the socket accepts and hello is answered, with the
simulated SNP backend and the policy adopted at start-up (the simulator's keys made by an
untimed first start). The baseline is the bare asyncio+msgpack server of bench_protocol,
spawned and answered the same way, in the same run. RSS (psutil): idle once ready, loaded
after 64 connections x 200 pings each plus 10 container runs (the baseline: the same pings),
and with 1,000 idle connections open (each past hello; the baseline holds the same).

    python benches/bench_agent_process.py [--starts 5] [--compare DIR]

--compare DIR also times the agent of another checkout (say `git archive` of an older commit
unpacked in DIR), taking turns with this one and the bare server: a before/after in one run.
Each spawned interpreter caches its bytecode (as the guest image ships it precompiled); the
first, untimed start of each writes it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent import TRUE, AgentAssets, build_assets, connect_when_ready, python_env, start_agent
from _report import Row, markdown_table, median
from bench_protocol import Conn, closed_loop_worker

from guestagent.client import Client
from guestagent.demo import assets

BARE = (
    "import sys; sys.path.insert(0, {benches!r}); import bench_protocol; "
    "bench_protocol.bare_server({path!r})"
)


def spawn_bare(work: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    path = str(work / f"{name}.sock")
    code = BARE.format(benches=str(Path(__file__).resolve().parent), path=path)
    return subprocess.Popen([sys.executable, "-c", code], env=python_env(work / "pycache")), path


def ready_bare(path: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = Conn(path)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("bare server exited") from None
            time.sleep(0.005)
            continue
        conn.hello()
        conn.sock.close()
        return
    raise TimeoutError("bare server did not start")


def time_agent_start(
    work: Path, prepared: AgentAssets, name: str, repo: Path | None = None
) -> float:
    began = time.perf_counter()
    process = start_agent(work, prepared, name, *([repo] if repo else []))
    try:
        with connect_when_ready(str(work / f"{name}.sock"), process) as client:
            elapsed = time.perf_counter() - began
            assert client.status()["policy"]["state"] == "enforcing"
        return elapsed
    finally:
        process.terminate()
        process.wait(timeout=60)


def time_bare_start(work: Path, name: str) -> float:
    began = time.perf_counter()
    process, path = spawn_bare(work, name)
    try:
        ready_bare(path, process)
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(timeout=60)


def children_cpu() -> float:
    """CPU seconds of every process this one has reaped (and of those they reaped): a start's
    CPU, the simulator's signing child included, less sensitive to load than its wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ping_load(path: str) -> None:
    for _ in range(2):  # 2 x 32 connections, 200 pings each, in a worker process each
        closed_loop_worker((path, 32, 200))


IDLE_CONNECTIONS = 1000


def idle_connections(path: str, count: int) -> list[Conn]:
    """`count` connections past hello, then left idle."""
    conns = []
    while len(conns) < count:
        try:
            conn = Conn(path)
        except BlockingIOError:  # the listen backlog is full for a moment
            time.sleep(0.01)
            continue
        conn.hello()
        conns.append(conn)
    return conns


def rss_with_idle(pid: int, path: str) -> int:
    conns = idle_connections(path, IDLE_CONNECTIONS)
    try:
        time.sleep(0.5)
        return rss(pid)
    finally:
        for conn in conns:
            conn.sock.close()


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def run_containers(client: Client, layer: str, count: int) -> None:
    client.call("mount_layer", {"layer_id": "base", "source": layer})
    client.call("mount_scratch", {"container_id": "c"})
    client.call("mount_overlay", {"container_id": "c", "layer_ids": ["base"]})
    spec = assets.host_spec(TRUE, [assets.PATH])
    for _ in range(count):
        client.call("create_container", {"container_id": "c", "spec": spec})
        client.call("start_container", {"container_id": "c"})
        client.call("wait_process", {"container_id": "c", "timeout": 30})
        client.call("delete_container", {"container_id": "c"})


def memory(work: Path, prepared: AgentAssets) -> dict[str, int]:
    agent = start_agent(work, prepared, "mem")
    bare, bare_path = spawn_bare(work, "mem-bare")
    try:
        client = connect_when_ready(str(work / "mem.sock"), agent)
        ready_bare(bare_path, bare)
        time.sleep(1)
        figures = {"agent_idle": rss(agent.pid), "bare_idle": rss(bare.pid)}
        ping_load(str(work / "mem.sock"))
        ping_load(bare_path)
        if os.geteuid() == 0 and shutil.which("runc"):
            run_containers(client, prepared.layer, 10)
        figures.update(agent_loaded=rss(agent.pid), bare_loaded=rss(bare.pid))
        figures.update(
            agent_idle_conns=rss_with_idle(agent.pid, str(work / "mem.sock")),
            bare_idle_conns=rss_with_idle(bare.pid, bare_path),
        )
        client.close()
        return figures
    finally:
        for process in (agent, bare):
            process.terminate()
            process.wait(timeout=60)


def rows(starts: int = 5, compare: Path | None = None) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="ga-bench-proc-"))
    try:
        prepared = build_assets(work)
        # Not timed: the simulator's keys, and each one's bytecode cache, are made.
        time_agent_start(work, prepared, "first")
        time_bare_start(work, "bare-first")
        if compare:  # its own policy (without the fields it does not know), keys, layer
            other = build_assets(work / "other", hostname=False)
            time_agent_start(work, other, "other-first", compare)
        agent_times, bare_times, other_times = [], [], []
        agent_cpu, bare_cpu = [], []
        for i in range(starts):
            used = children_cpu()
            agent_times.append(time_agent_start(work, prepared, f"a{i}"))
            agent_cpu.append(children_cpu() - used)
            used = children_cpu()
            bare_times.append(time_bare_start(work, f"b{i}"))
            bare_cpu.append(children_cpu() - used)
            if compare:
                other_times.append(time_agent_start(work, other, f"o{i}", compare))
        mem = memory(work, prepared)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    agent_ms, bare_ms = median(agent_times) * 1000, median(bare_times) * 1000
    agent_cpu_ms, bare_cpu_ms = median(agent_cpu) * 1000, median(bare_cpu) * 1000
    mib = 1 << 20
    compared = []
    if compare:
        other_ms = median(other_times) * 1000
        compared.append(
            Row(
                "agent process",
                f"start to ready, p50 of {starts}: this checkout against {compare.name}",
                f"{agent_ms:.0f} ms",
                f"{compare.name}'s agent {other_ms:.0f} ms ({other_ms / bare_ms:.2f}x bare)",
                agent_ms / other_ms,
                "lower",
            )
        )
    return [
        *compared,
        Row(
            "agent process",
            f"start to ready (spawn → hello answered, policy adopted), p50 of {starts}",
            f"{agent_ms:.0f} ms",
            f"bare asyncio+msgpack server {bare_ms:.0f} ms",
            agent_ms / bare_ms,
            "lower",
        ),
        Row(
            "agent process",
            f"CPU time of each timed start (to ready, one status, SIGTERM; children included), "
            f"p50 of {starts}",
            f"{agent_cpu_ms:.0f} ms",
            f"bare server {bare_cpu_ms:.0f} ms",
            agent_cpu_ms / bare_cpu_ms,
            "lower",
        ),
        Row(
            "agent process",
            "RSS idle, once ready",
            f"{mem['agent_idle'] / mib:.1f} MiB",
            f"bare server {mem['bare_idle'] / mib:.1f} MiB",
            mem["agent_idle"] / mem["bare_idle"],
            "lower",
        ),
        Row(
            "agent process",
            "RSS loaded (64 connections x 200 pings, then 10 container runs)",
            f"{mem['agent_loaded'] / mib:.1f} MiB",
            f"bare server after the same pings {mem['bare_loaded'] / mib:.1f} MiB",
            mem["agent_loaded"] / mem["bare_loaded"],
            "lower",
        ),
        Row(
            "agent process",
            f"RSS with {IDLE_CONNECTIONS:,} idle connections open (each past hello)",
            f"{mem['agent_idle_conns'] / mib:.1f} MiB",
            f"bare server with the same {mem['bare_idle_conns'] / mib:.1f} MiB",
            mem["agent_idle_conns"] / mem["bare_idle_conns"],
            "lower",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--compare", type=Path, metavar="DIR", help="another checkout's agent")
    args = parser.parse_args()
    print(markdown_table(rows(args.starts, args.compare)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
