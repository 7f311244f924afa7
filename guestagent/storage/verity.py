"""dm-verity hash trees compatible with `veritysetup format` (format 1), built and checked in
userspace.

`format_tree` writes the hash device byte for byte as veritysetup does (superblock padded to a
hash block, then the levels root-first), so the kernel can map either tool's output. `verify`
checks top-down (root, then each stored level against its verified parent, then the data) so a
failure names the first corrupt block. Memory stays bounded: level 0 streams in chunks and upper
levels are read back from the hash device in chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import ExitStack

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.storage.verity_hash import BlockHasher, digest_blocks, read_exact
from guestagent.storage.verity_params import (
    VerityGeometry,
    VerityParams,
    pack_superblock,
)

__all__ = ["compute_root", "format_tree", "root_of_tree", "verify", "verify_block"]

_READ_CHUNK = 4 << 20


def _open(path: str, write: bool = False) -> int:
    flags = (os.O_RDWR | os.O_CREAT) if write else os.O_RDONLY
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot open {path}: {exc.strerror}") from exc


def _digest(params: VerityParams, block: bytes) -> bytes:
    return hashlib.new(params.hash_name, params.salt + block).digest()


def _hash_levels_above_zero(fd: int, params: VerityParams, geo: VerityGeometry) -> None:
    """Build levels 1..L-1 from the level below, already written on the hash device."""
    hbs = params.hash_block_size
    per_chunk = max(1, _READ_CHUNK // hbs)
    for level in range(1, geo.levels):
        src, count = geo.level_start[level - 1], geo.level_blocks[level - 1]
        out_pos = geo.level_start[level] * hbs
        for first in range(0, count, per_chunk):
            n = min(per_chunk, count - first)
            raw = read_exact(fd, (src + first) * hbs, n * hbs)
            packed = digest_blocks(raw, hbs, params.hash_name, params.salt, params.digest_stride)
            os.pwrite(fd, packed, out_pos)
            out_pos += len(packed)
        _zero_to_block_end(fd, out_pos, hbs)


def _zero_to_block_end(fd: int, position: int, block: int) -> None:
    if position % block:
        os.pwrite(fd, bytes(block - position % block), position)


def format_tree(
    data_path: str, hash_path: str, params: VerityParams, hasher: BlockHasher | None = None
) -> bytes:
    """Write superblock (unless disabled) and tree to `hash_path`; return the root digest.

    `hash_path` may equal `data_path` (appended layout) with hash_offset >= the data size.
    """
    hasher = hasher or BlockHasher()
    geo = params.geometry()
    same = os.path.realpath(data_path) == os.path.realpath(hash_path)
    if same and params.hash_offset < params.data_size:
        raise InvalidArgumentError("hash area overlaps the data: hash offset below data size")
    with ExitStack() as stack:
        fd = _open(hash_path, write=True)
        stack.callback(os.close, fd)
        if params.superblock:
            sb = pack_superblock(params)
            os.pwrite(fd, sb + bytes(params.hash_block_size - len(sb)), params.hash_offset)
        if geo.levels == 0:
            return _root_of_single_block(data_path, params)
        position = geo.level_start[0] * params.hash_block_size
        for _first, packed in _leaf_digests(data_path, params, hasher):
            os.pwrite(fd, packed, position)
            position += len(packed)
        _zero_to_block_end(fd, position, params.hash_block_size)
        _hash_levels_above_zero(fd, params, geo)
        return root_of_tree(fd, params, geo)


def _leaf_digests(
    data_path: str, params: VerityParams, hasher: BlockHasher
) -> Iterator[tuple[int, bytes]]:
    size = _size_of(data_path)
    if size < params.data_size:
        raise InvalidArgumentError(
            f"{data_path} has {size} bytes, fewer than {params.data_blocks} data blocks"
        )
    return hasher.iter_digests(
        data_path,
        0,
        params.data_blocks,
        params.data_block_size,
        params.hash_name,
        params.salt,
        params.digest_stride,
    )


def _size_of(path: str) -> int:
    fd = _open(path)
    try:
        return os.lseek(fd, 0, os.SEEK_END)  # works for block devices too
    finally:
        os.close(fd)


def _root_of_single_block(data_path: str, params: VerityParams) -> bytes:
    fd = _open(data_path)
    try:
        return _digest(params, read_exact(fd, 0, params.data_block_size))
    except EOFError as exc:
        raise IntegrityError(f"data device shorter than its verity tree: {exc}") from exc
    finally:
        os.close(fd)


def root_of_tree(fd: int, params: VerityParams, geo: VerityGeometry | None = None) -> bytes:
    """H(salt || top hash block): what the kernel compares with the table's root digest."""
    geo = geo or params.geometry()
    top = geo.level_start[-1] * params.hash_block_size
    try:
        return _digest(params, read_exact(fd, top, params.hash_block_size))
    except EOFError as exc:
        raise IntegrityError("hash device shorter than its verity tree") from exc


def compute_root(data_path: str, hash_path: str, params: VerityParams) -> bytes:
    """The root digest the stored tree claims, computed from the device (never trusted input).

    This reads only the top hash block; the kernel (or `verify`) then checks every block
    against it.
    """
    geo = params.geometry()
    if geo.levels == 0:
        return _root_of_single_block(data_path, params)
    fd = _open(hash_path)
    try:
        return root_of_tree(fd, params, geo)
    finally:
        os.close(fd)


def _corrupt(kind: str, block: int, level: int | None = None) -> IntegrityError:
    where = f"{kind} block {block}" + ("" if level is None else f" (tree level {level})")
    details = {"kind": kind, "block": block, "level": level}
    return IntegrityError(f"verity: {where} is corrupted", details=details)


def _check_root(params: VerityParams, actual: bytes, root: bytes, geo: VerityGeometry) -> None:
    if actual != root:
        if geo.levels == 0:
            raise _corrupt("data", 0)
        raise IntegrityError(
            f"verity: root hash block {geo.level_start[-1]} does not match the root hash",
            details={"kind": "hash", "block": geo.level_start[-1], "level": geo.levels - 1},
        )


def _first_mismatch(stride: int, got: bytes, want: bytes) -> int:
    for i in range(0, len(got), stride):
        if got[i : i + stride] != want[i : i + stride]:
            return i // stride
    raise AssertionError("no mismatch found")  # only called when got != want


def _verify(
    data_path: str,
    hash_path: str,
    root: bytes,
    params: VerityParams,
    hasher: BlockHasher | None = None,
) -> None:
    """Check every hash and data block; raise IntegrityError naming the first bad block."""
    hasher = hasher or BlockHasher()
    geo = params.geometry()
    if geo.levels == 0:
        _check_root(params, _root_of_single_block(data_path, params), root, geo)
        return
    with ExitStack() as stack:
        fd = _open(hash_path)
        stack.callback(os.close, fd)
        _check_root(params, root_of_tree(fd, params, geo), root, geo)
        for level in reversed(range(geo.levels - 1)):
            _verify_level(fd, params, geo, level)
        stride = params.digest_stride
        level0 = geo.level_start[0] * params.hash_block_size
        for first, packed in _leaf_digests(data_path, params, hasher):
            stored = read_exact(fd, level0 + first * stride, len(packed))
            if stored != packed:
                raise _corrupt("data", first + _first_mismatch(stride, packed, stored))


def _verify_level(fd: int, params: VerityParams, geo: VerityGeometry, level: int) -> None:
    """Check the stored blocks of `level` against the (verified) digests of `level + 1`."""
    hbs, stride = params.hash_block_size, params.digest_stride
    start, count = geo.level_start[level], geo.level_blocks[level]
    parent = geo.level_start[level + 1] * hbs
    per_chunk = max(1, _READ_CHUNK // hbs)
    for first in range(0, count, per_chunk):
        n = min(per_chunk, count - first)
        raw = read_exact(fd, (start + first) * hbs, n * hbs)
        packed = digest_blocks(raw, hbs, params.hash_name, params.salt, stride)
        stored = read_exact(fd, parent + first * stride, len(packed))
        if stored != packed:
            bad = first + _first_mismatch(stride, packed, stored)
            raise _corrupt("hash", start + bad, level)


def _verify_block(
    data_path: str, hash_path: str, root: bytes, params: VerityParams, index: int
) -> None:
    """Check one data block along its path from the root, as the kernel does on a read."""
    if not 0 <= index < params.data_blocks:
        raise InvalidArgumentError(f"block {index} outside 0..{params.data_blocks - 1}")
    geo = params.geometry()
    with ExitStack() as stack:
        dfd = _open(data_path)
        stack.callback(os.close, dfd)
        dbs = params.data_block_size
        data = read_exact(dfd, index * dbs, dbs)
        if geo.levels == 0:
            _check_root(params, _digest(params, data), root, geo)
            return
        hfd = _open(hash_path)
        stack.callback(os.close, hfd)
        expected = root
        for level in reversed(range(geo.levels)):
            entry = index >> (geo.bits * level)  # digest index within this level
            block_no = geo.level_start[level] + (entry >> geo.bits)
            block = read_exact(hfd, block_no * params.hash_block_size, params.hash_block_size)
            if _digest(params, block) != expected:
                raise _corrupt("hash", block_no, level)
            offset = (entry & ((1 << geo.bits) - 1)) * params.digest_stride
            expected = block[offset : offset + params.digest_size]
        if _digest(params, data) != expected:
            raise _corrupt("data", index)


def verify(
    data_path: str,
    hash_path: str,
    root: bytes,
    params: VerityParams,
    hasher: BlockHasher | None = None,
) -> None:
    """Check every hash and data block; raise IntegrityError naming the first bad block."""
    try:
        _verify(data_path, hash_path, root, params, hasher)
    except EOFError as exc:
        raise IntegrityError(f"verity: device shorter than its tree ({exc})") from exc


def verify_block(
    data_path: str, hash_path: str, root: bytes, params: VerityParams, index: int
) -> None:
    """Check one data block along its path from the root; IntegrityError names the bad block."""
    try:
        _verify_block(data_path, hash_path, root, params, index)
    except EOFError as exc:
        raise IntegrityError(f"verity: device shorter than its tree ({exc})") from exc
