"""Protocol throughput and latency over the unix transport, clients in other processes.

Baseline, measured in the same run with the same clients: a bare asyncio server that frames
and msgpack-decodes each request and answers it, with no validation, handshake or dispatch.
Measured: pipelined throughput on one connection (the server's capacity), and closed-loop
throughput and latency (each connection one request at a time) at 1, 16 and 64 connections.

    python benches/bench_protocol.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Row, markdown_table

HEADER = struct.Struct(">I")
LEVELS = (1, 16, 64)


class BareEcho(asyncio.Protocol):
    """The baseline: frames + msgpack, nothing else."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 4:
            (size,) = HEADER.unpack_from(buffer, offset)
            if len(buffer) - offset - 4 < size:
                break
            request = msgpack.unpackb(bytes(buffer[offset + 4 : offset + 4 + size]))
            offset += 4 + size
            reply = msgpack.packb({"id": request["id"], "ok": True, "result": {"payload": b""}})
            self.transport.write(HEADER.pack(len(reply)) + reply)
        del buffer[:offset]


def bare_server(path: str) -> None:
    """The baseline server."""

    async def main():
        server = await asyncio.get_running_loop().create_unix_server(BareEcho, path)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def frame(request_id: int, op: str = "ping") -> bytes:
    payload = msgpack.packb({"id": request_id, "op": op, "args": {}})
    return HEADER.pack(len(payload)) + payload


class Conn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buffer = bytearray()

    def read_replies(self, count: int) -> None:
        got = 0
        while got < count:
            while len(self.buffer) < 4 or len(self.buffer) < 4 + HEADER.unpack_from(self.buffer)[0]:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("closed")
                self.buffer += chunk
            (size,) = HEADER.unpack_from(self.buffer)
            del self.buffer[: 4 + size]
            got += 1

    def hello(self) -> None:
        payload = msgpack.packb({"id": 0, "op": "hello", "args": {"protocol": 1}})
        self.sock.sendall(HEADER.pack(len(payload)) + payload)
        self.read_replies(1)


def pipelined(path: str, total: int, window: int = 512) -> float:
    conn = Conn(path)
    conn.hello()
    batch = b"".join(frame(i) for i in range(window))
    start = time.perf_counter()
    for _ in range(total // window):
        conn.sock.sendall(batch)
        conn.read_replies(window)
    elapsed = time.perf_counter() - start
    return (total // window * window) / elapsed


class _LoopConn:
    """One connection of a closed-loop client: a request out, its reply in, the next out."""

    def __init__(self, path: str, count: int) -> None:
        self.conn = Conn(path)
        self.conn.hello()
        self.sock = self.conn.sock
        self.sock.setblocking(False)
        self.left = count
        self.sent_at = 0.0
        self.request = frame(1)

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.sock.sendall(self.request)  # a few bytes into an empty socket buffer

    def replies(self) -> int:
        """Consume the whole replies in the buffer; returns how many."""
        buffer, got = self.conn.buffer, 0
        while len(buffer) >= 4:
            (size,) = HEADER.unpack_from(buffer)
            if len(buffer) < 4 + size:
                break
            del buffer[: 4 + size]
            got += 1
        return got


def closed_loop_worker(args: tuple[str, int, int]) -> tuple[list[float], float, float]:
    """`connections` connections in one process, each with one request at a time."""
    path, connections, per_connection = args
    conns = [_LoopConn(path, per_connection) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    samples: list[float] = []
    began = time.perf_counter()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    active = len(conns)
    while active:
        for key, _ in selector.select():
            conn = key.data
            chunk = conn.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            conn.conn.buffer += chunk
            if conn.replies():
                samples.append(time.perf_counter() - conn.sent_at)
                conn.left -= 1
                if conn.left:
                    conn.send()
                else:
                    selector.unregister(conn.sock)
                    active -= 1
    ended = time.perf_counter()
    for conn in conns:
        conn.sock.close()
    return samples, began, ended


def at_connections(path: str, connections: int, total: int) -> tuple[float, list[float]]:
    """Closed-loop requests/s and per-request latencies (s) over `connections` connections."""
    workers = min(connections, os.cpu_count() or 1)
    per_connection = max(1, total // connections)
    with multiprocessing.Pool(workers) as pool:
        jobs = [(path, connections // workers, per_connection)] * workers
        results = pool.map(closed_loop_worker, jobs)
    samples = [s for r in results for s in r[0]]
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return len(samples) / elapsed, samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def wait_socket(path: str) -> None:
    for _ in range(400):
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(path) == 0:
                return
        time.sleep(0.025)
    raise TimeoutError(path)


def measure(path: str, quick: bool) -> dict[str, float]:
    total = 20_000 if quick else 100_000
    figures = {"pipelined_rps": statistics.median(pipelined(path, total) for _ in range(3))}
    for connections in LEVELS:
        rate, samples = at_connections(path, connections, 5_000 if quick else 20_000)
        figures[f"c{connections}_rps"] = rate
        figures[f"c{connections}_p50_us"] = pct(samples, 0.50)
        figures[f"c{connections}_p99_us"] = pct(samples, 0.99)
    return figures


def start_agent(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    path = str(workdir / "agent.sock")
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guestagent",
            "serve",
            "--listen",
            f"unix://{path}",
            "--log-level",
            "warning",
            "--state-dir",
            str(workdir / "state"),
            "--snp",
            "none",  # ping is never gated: no policy is needed to measure the protocol
            "--no-containers",
        ],
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,  # the checkout under test
    )
    wait_socket(path)
    return path, agent


def compare(quick: bool) -> dict[str, dict[str, float]]:
    """Both servers, in the same run, with the same clients."""
    workdir = Path(tempfile.mkdtemp(prefix="ga-bench-"))
    bare_path = str(workdir / "bare.sock")
    bare = multiprocessing.Process(target=bare_server, args=(bare_path,), daemon=True)
    bare.start()
    agent_path, agent = start_agent(workdir)
    try:
        wait_socket(bare_path)
        return {"bare": measure(bare_path, quick), "agent": measure(agent_path, quick)}
    finally:
        agent.terminate()
        agent.wait()
        bare.terminate()


def rows(quick: bool = False) -> list[Row]:
    results = compare(quick)
    agent, bare = results["agent"], results["bare"]
    table = [
        Row(
            "protocol",
            "ping throughput, 1 connection, pipelined (512 in flight)",
            f"{agent['pipelined_rps']:,.0f} req/s",
            f"bare asyncio+msgpack {bare['pipelined_rps']:,.0f} req/s",
            agent["pipelined_rps"] / bare["pipelined_rps"],
            "higher",
        )
    ]
    for n in LEVELS:
        table.append(
            Row(
                "protocol",
                f"ping, {n} connection(s), each one request at a time: throughput",
                f"{agent[f'c{n}_rps']:,.0f} req/s",
                f"bare {bare[f'c{n}_rps']:,.0f} req/s",
                agent[f"c{n}_rps"] / bare[f"c{n}_rps"],
                "higher",
            )
        )
        table.append(
            Row(
                "protocol",
                f"ping, {n} connection(s): latency p50 / p99",
                f"{agent[f'c{n}_p50_us']:,.0f} / {agent[f'c{n}_p99_us']:,.0f} µs",
                f"bare {bare[f'c{n}_p50_us']:,.0f} / {bare[f'c{n}_p99_us']:,.0f} µs",
                agent[f"c{n}_p50_us"] / bare[f"c{n}_p50_us"],
                "lower",
            )
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(markdown_table(rows(options.quick)))


if __name__ == "__main__":
    main()
