"""Protocol throughput and latency over the unix transport, client in another process.

Baseline, measured in the same run with the same client: a bare asyncio server that frames
and msgpack-decodes each request and answers it, with no validation, handshake or dispatch.

    python benches/bench_protocol.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

HEADER = struct.Struct(">I")


def bare_server(path: str) -> None:
    """The baseline: frames + msgpack, nothing else."""

    class Echo(asyncio.Protocol):
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

    async def main():
        server = await asyncio.get_running_loop().create_unix_server(Echo, path)
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


def one_at_a_time(path: str, count: int) -> list[float]:
    conn = Conn(path)
    conn.hello()
    request = frame(1)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        conn.sock.sendall(request)
        conn.read_replies(1)
        samples.append(time.perf_counter() - start)
    return samples


def concurrent_worker(args: tuple[str, int]) -> list[float]:
    return one_at_a_time(*args)


def concurrent(path: str, connections: int, per_connection: int) -> tuple[float, list[float]]:
    with multiprocessing.Pool(connections) as pool:
        start = time.perf_counter()
        results = pool.map(concurrent_worker, [(path, per_connection)] * connections)
        elapsed = time.perf_counter() - start
    samples = [s for r in results for s in r]
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


def measure(name: str, path: str, quick: bool) -> dict[str, float]:
    total = 20_000 if quick else 100_000
    single = one_at_a_time(path, 2000 if quick else 10_000)
    rate16, samples16 = concurrent(path, 16, 300 if quick else 1500)
    return {
        "pipelined_rps": statistics.median(pipelined(path, total) for _ in range(3)),
        "p50_us": pct(single, 0.50),
        "p99_us": pct(single, 0.99),
        "c16_rps": rate16,
        "c16_p50_us": pct(samples16, 0.50),
        "c16_p99_us": pct(samples16, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ga-bench-"))
    bare_path = str(workdir / "bare.sock")
    agent_path = str(workdir / "agent.sock")
    bare = multiprocessing.Process(target=bare_server, args=(bare_path,), daemon=True)
    bare.start()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guestagent",
            "serve",
            "--listen",
            f"unix://{agent_path}",
            "--log-level",
            "warning",
            "--state-dir",
            str(workdir / "state"),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_socket(bare_path)
        wait_socket(agent_path)
        results = {
            "bare asyncio+msgpack": measure("bare", bare_path, options.quick),
            "guestagent": measure("agent", agent_path, options.quick),
        }
    finally:
        agent.terminate()
        agent.wait()
        bare.terminate()
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    keys = list(next(iter(results.values())))
    print(f"{'metric':<16}" + "".join(f"{name:>24}" for name in results) + f"{'agent/bare':>12}")
    for key in keys:
        values = [results[name][key] for name in results]
        print(
            f"{key:<16}"
            + "".join(f"{v:>24,.1f}" for v in values)
            + f"{values[1] / values[0]:>12.2f}"
        )
    print("targets: pipelined >= 30,000 pings/s; one-at-a-time p99 < 500 us")


if __name__ == "__main__":
    main()
