"""Console commands that read the guest system: processes (psutil), network (netlink dumps),
and the agent's own counters and resource use."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import psutil

from guestagent.errors import NotFoundError
from guestagent.network.links import Network

if TYPE_CHECKING:
    from guestagent.console.view import AgentView

__all__ = ["MAX_PROCESSES", "metrics", "network", "process_tree", "processes"]

MAX_PROCESSES = 2000  # a bound on the reply, whatever runs in the guest
CPU_SAMPLE_SECONDS = 0.1
MAX_COMMAND = 200
_ATTRS = ["pid", "ppid", "name", "username", "status", "cmdline", "num_threads", "memory_info"]


async def processes(view: AgentView, root: int | None) -> dict[str, Any]:
    manager = view.containers
    inits = {
        item["pid"]: item["container_id"]
        for item in (manager.list() if manager is not None else [])
        if item.get("pid")
    }
    return await asyncio.to_thread(process_tree, root, inits)


def _sample() -> dict[int, psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(_ATTRS):
        try:
            proc.cpu_percent(None)  # starts the interval the second reading closes
        except psutil.Error:
            continue
        found[proc.pid] = proc
    return found


def _row(proc: psutil.Process, depth: int, container: str | None, total: int) -> dict[str, Any]:
    info = proc.info
    try:
        cpu_percent = proc.cpu_percent(None)
        times = proc.cpu_times()
        cpu_seconds = round(times.user + times.system, 2)
    except psutil.Error:
        cpu_percent, cpu_seconds = None, None
    memory = info.get("memory_info")
    command = " ".join(info.get("cmdline") or []) or f"[{info.get('name')}]"
    return {
        "pid": proc.pid,
        "ppid": info.get("ppid"),
        "depth": depth,
        "name": info.get("name"),
        "user": info.get("username"),
        "status": info.get("status"),
        "threads": info.get("num_threads"),
        "cpu_percent": cpu_percent,
        "cpu_seconds": cpu_seconds,
        "rss_bytes": memory.rss if memory is not None else None,
        "memory_percent": round(memory.rss * 100 / total, 2) if memory is not None else None,
        "container": container,
        "command": command[:MAX_COMMAND],
    }


def process_tree(root: int | None, container_inits: dict[int, str]) -> dict[str, Any]:
    """The tree under `root` (pid 1 by default), depth first, children by pid."""
    found = _sample()
    time.sleep(CPU_SAMPLE_SECONDS)
    root = root if root is not None else (1 if 1 in found else os.getpid())
    if root not in found:
        raise NotFoundError(f"no process {root}")
    children: dict[int, list[int]] = {}
    for pid, proc in found.items():
        parent = proc.info.get("ppid")
        if pid != root and parent in found and parent != pid:
            children.setdefault(parent, []).append(pid)
    total = psutil.virtual_memory().total
    rows: list[dict[str, Any]] = []
    stack: list[tuple[int, int, str | None]] = [(root, 0, container_inits.get(root))]
    while stack and len(rows) < MAX_PROCESSES:
        pid, depth, container = stack.pop()
        rows.append(_row(found[pid], depth, container, total))
        for child in sorted(children.get(pid, ()), reverse=True):
            stack.append((child, depth + 1, container_inits.get(child, container)))
    return {"root": root, "processes": rows, "truncated": bool(stack)}


async def network() -> dict[str, Any]:
    """The agent's own namespace: links with their addresses, and the main routing table."""
    async with Network() as net:
        interfaces = await net.list_interfaces()
        routes = await net.list_routes()
    return {"interfaces": interfaces, "routes": routes}


def _own_process() -> dict[str, Any]:
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        return {
            "pid": me.pid,
            "rss_bytes": me.memory_info().rss,
            "cpu_seconds": round(times.user + times.system, 2),
            "threads": me.num_threads(),
            "open_fds": me.num_fds(),
        }


def metrics(view: AgentView, console: dict[str, Any]) -> dict[str, Any]:
    agent = view.status()
    log = getattr(view.gate, "log", None)
    manager = view.containers
    return {
        "uptime_seconds": agent.get("uptime_seconds"),
        "requests": agent.get("requests"),
        "connections": agent.get("connections"),
        "decisions": None if log is None else {"allowed": log.allowed, "denied": log.denied},
        "containers": len(manager.list()) if manager is not None else 0,
        "console": console,
        "process": _own_process(),
    }
