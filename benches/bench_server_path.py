"""The agent's per-request Python cost on the protocol path, without sockets or scheduling.

A real `Agent` (no SNP, no containers) and its `Connection`, fed ping frames through
`data_received` with a transport that only collects what is written: frames in, decode,
handshake and argument checks, dispatch, encode, frame out. The baseline, in the same run and
with the same transport, is bench_protocol's bare server protocol (frame + msgpack only).
This isolates the code the agent adds from syscalls and event-loop noise, so before/after
figures of an optimisation are steady on a busy machine.

    python benches/bench_server_path.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Row, markdown_table, median
from bench_protocol import HEADER, BareEcho

from guestagent.rpc.pool import ConnectionPool
from guestagent.server.agent import Agent, AgentConfig


class CollectingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def frame(request_id: int, op: str, args: dict[str, Any]) -> bytes:
    payload = msgpack.packb({"id": request_id, "op": op, "args": args})
    return HEADER.pack(len(payload)) + payload


def per_request_us(feed: Callable[[bytes], None], frames: list[bytes], batch: int) -> float:
    """Microseconds per request, feeding `batch` frames per data_received call."""
    chunks = [b"".join(frames[i : i + batch]) for i in range(0, len(frames), batch)]
    began = time.perf_counter()
    for chunk in chunks:
        feed(chunk)
    return (time.perf_counter() - began) / len(frames) * 1e6


def measure(requests: int, rounds: int = 5) -> dict[str, float]:
    async def run() -> dict[str, float]:
        with tempfile.TemporaryDirectory() as state:
            agent = Agent(AgentConfig(snp="none", state_dir=state, manage_containers=False))
            pool = ConnectionPool(agent, "bench", agent.budget, agent.limits)
            ours = pool.factory()
            ours.connection_made(CollectingTransport())
            ours.data_received(frame(0, "hello", {"protocol": 1}))
            theirs = BareEcho()
            theirs.connection_made(CollectingTransport())
            frames = [frame(i, "ping", {}) for i in range(1, requests + 1)]
            results: dict[str, list[float]] = {}
            for _ in range(rounds):  # the two take turns, so neither is favoured
                for name, protocol in (("agent", ours), ("bare", theirs)):
                    for batch in (1, 64):
                        key = f"{name}_{batch}"
                        cost = per_request_us(protocol.data_received, frames, batch)
                        results.setdefault(key, []).append(cost)
            return {key: median(values) for key, values in results.items()}

    return asyncio.run(run())


def rows(requests: int = 20000) -> list[Row]:
    got = measure(requests)
    return [
        Row(
            "protocol",
            f"agent Python per ping, in-process, {label}",
            f"{got[f'agent_{batch}']:.1f} µs",
            f"bare frame+msgpack {got[f'bare_{batch}']:.1f} µs",
            got[f"agent_{batch}"] / got[f"bare_{batch}"],
            "lower",
        )
        for batch, label in ((1, "one frame per read"), (64, "64 frames per read"))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    print(markdown_table(rows(parser.parse_args().requests)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
