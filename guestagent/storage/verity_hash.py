"""Block hashing for verity levels: in-process for small inputs, a process pool for big ones.

Per-block hashlib calls hold the GIL for about as long as they hash, so threads convoy on the GIL
(measured slower than one thread); worker processes scale with cores. Each worker reads its own
range with pread, so only digests (1/128 of the data for sha256) cross the process boundary.
Results come back in order with a bounded number of chunks in flight: memory stays bounded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator

from guestagent.containers import children
from guestagent.records import record

__all__ = ["BlockHasher", "digest_blocks", "digest_file_range"]

CHUNK_BYTES = 4 << 20
# Below this much data a pool costs more to start than it saves.
POOL_THRESHOLD = 64 << 20


def digest_blocks(
    buf: bytes | memoryview, block_size: int, hash_name: str, salt: bytes, stride: int
) -> bytes:
    """Packed format-1 digests H(salt || block), each zero-padded to `stride` bytes."""
    view = memoryview(buf)
    base = hashlib.new(hash_name, salt)
    pad = bytes(stride - base.digest_size)
    out = []
    append = out.append
    for start in range(0, len(view), block_size):
        h = base.copy()
        h.update(view[start : start + block_size])
        append(h.digest())
        if pad:
            append(pad)
    return b"".join(out)


def digest_file_range(
    path: str, offset: int, length: int, block_size: int, hash_name: str, salt: bytes, stride: int
) -> bytes:
    """Worker entry point: read [offset, offset+length) of `path` and digest its blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = read_exact(fd, offset, length)
    finally:
        os.close(fd)
    return digest_blocks(buf, block_size, hash_name, salt, stride)


def read_exact(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise EOFError(f"short read at offset {offset + len(data)}")
        data += more
    return data


@record(mutable=True)
class BlockHasher:
    """Digests runs of blocks of a file; `workers` <= 1 means in-process."""

    workers: int = os.cpu_count() or 1
    chunk_bytes: int = CHUNK_BYTES
    pool_threshold: int = POOL_THRESHOLD

    def iter_digests(
        self,
        path: str,
        offset: int,
        blocks: int,
        block_size: int,
        hash_name: str,
        salt: bytes,
        stride: int,
    ) -> Iterator[tuple[int, bytes]]:
        """Yield (first block index, packed digests) for consecutive chunks, in order."""
        per_chunk = max(1, self.chunk_bytes // block_size)
        ranges = [(b, min(per_chunk, blocks - b)) for b in range(0, blocks, per_chunk)]
        if self.workers <= 1 or blocks * block_size < self.pool_threshold or len(ranges) < 2:
            for first, count in ranges:
                start, length = offset + first * block_size, count * block_size
                yield (
                    first,
                    digest_file_range(path, start, length, block_size, hash_name, salt, stride),
                )
            return
        argv = [path, str(block_size), hash_name, salt.hex() or "-", str(stride)]
        with _WorkerPool(min(self.workers, len(ranges)), argv) as pool:
            yield from pool.run(ranges, offset, block_size, stride)


class _WorkerPool:
    """Worker processes started with exec (never fork of a threaded agent, never a re-import
    of `__main__`), fed byte ranges round-robin over pipes; answers are read back in order."""

    def __init__(self, count: int, argv: list[str]) -> None:
        command = [sys.executable, "-m", "guestagent.storage._hash_worker", *argv]
        self.procs: list[children.Child] = []
        try:
            for _ in range(count):
                # Through the agent's one reaper (children.start), never a Popen.wait of ours.
                self.procs.append(children.start(command, stdin=subprocess.PIPE))
        except OSError:
            self.close()
            raise

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.procs:
            proc.close()
            proc.kill()
            proc.wait()

    def run(
        self, ranges: list[tuple[int, int]], offset: int, block_size: int, stride: int
    ) -> Iterator[tuple[int, bytes]]:
        workers = len(self.procs)
        # Two requests outstanding per worker keeps each busy while the parent reads.
        for k, (first, count) in enumerate(ranges[: 2 * workers]):
            self._send(k % workers, offset + first * block_size, count * block_size)
        for k, (first, count) in enumerate(ranges):
            proc = self.procs[k % workers]
            want = count * stride
            assert proc.stdout is not None
            packed = proc.stdout.read(want)
            if len(packed) != want:
                raise EOFError(f"hash worker failed: {self._stderr_of(proc)}")
            ahead = k + 2 * workers
            if ahead < len(ranges):
                nfirst, ncount = ranges[ahead]
                self._send(ahead % workers, offset + nfirst * block_size, ncount * block_size)
            yield first, packed

    def _send(self, index: int, start: int, length: int) -> None:
        stdin = self.procs[index].stdin
        assert stdin is not None
        stdin.write(f"{start} {length}\n".encode())
        stdin.flush()

    @staticmethod
    def _stderr_of(proc: children.Child) -> str:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        return proc.stderr.read().decode(errors="replace").strip()[-300:] or "no output"
