"""Layer images with their verity tree appended: [filesystem][superblock padded][tree].

The agent never trusts the host's claim of a root hash or of the layout. It reads the
filesystem's own superblock to learn where the data ends (hcsshim reads the ext4 superblock the
same way), requires the verity superblock there to describe exactly that many data blocks, and
hashes the top tree block itself. The policy then decides whether that root is allowed, and
dm-verity (or `verify`) holds every later read to it.
"""

from __future__ import annotations

import os
import struct

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.records import record
from guestagent.storage.verity import compute_root, format_tree
from guestagent.storage.verity_hash import BlockHasher, read_exact
from guestagent.storage.verity_params import SUPERBLOCK_SIZE, VerityParams, parse_superblock

__all__ = [
    "LAYER_SALT",
    "VerityInfo",
    "append_tree",
    "filesystem_size",
    "read_appended_params",
    "root_from_device",
]

# Layer images use a fixed salt so their roots are reproducible (hcsshim and kata use the same
# 32 zero bytes).
LAYER_SALT = bytes(32)
EROFS_MAGIC = 0xE0F5E1E2
EXT4_MAGIC = 0xEF53
_SB_OFFSET = 1024


@record
class VerityInfo:
    """What the agent learned from a device: the root it computed and the tree's parameters."""

    root_hash: str
    params: VerityParams

    @property
    def hash_start_block(self) -> int:
        """The dm-verity table's <hash_start_block>: the root block, after the superblock."""
        return self.params.geometry().tree_start


def filesystem_size(path: str) -> int:
    """The byte size an erofs or ext4 filesystem at the start of `path` declares for itself."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = read_exact(fd, _SB_OFFSET, 1024)
    except EOFError as exc:
        raise IntegrityError(f"{path}: too short to hold a filesystem") from exc
    finally:
        os.close(fd)
    (erofs_magic,) = struct.unpack_from("<I", head, 0)
    if erofs_magic == EROFS_MAGIC:
        blkszbits = head[12]
        (blocks,) = struct.unpack_from("<I", head, 36)
        if not 9 <= blkszbits <= 16:
            raise IntegrityError(f"{path}: erofs block size 2^{blkszbits} unsupported")
        return blocks << blkszbits
    (ext4_magic,) = struct.unpack_from("<H", head, 56)
    if ext4_magic == EXT4_MAGIC:
        (lo,) = struct.unpack_from("<I", head, 4)
        (log_block,) = struct.unpack_from("<I", head, 24)
        (incompat,) = struct.unpack_from("<I", head, 0x60)
        hi = struct.unpack_from("<I", head, 0x150)[0] if incompat & 0x80 else 0
        if log_block > 6:
            raise IntegrityError(f"{path}: ext4 block size unsupported")
        return ((hi << 32) | lo) * (1024 << log_block)
    raise IntegrityError(f"{path}: neither an erofs nor an ext4 filesystem")


def read_appended_params(path: str) -> VerityParams:
    """The verity superblock that must sit right after the filesystem, checked against it."""
    data_size = filesystem_size(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = read_exact(fd, data_size, SUPERBLOCK_SIZE)
    except EOFError as exc:
        raise IntegrityError(f"{path}: no verity superblock after the filesystem") from exc
    finally:
        os.close(fd)
    params = parse_superblock(raw, hash_offset=data_size)
    if params.data_size != data_size:
        raise IntegrityError(
            f"{path}: verity superblock covers {params.data_size} bytes "
            f"but the filesystem is {data_size} bytes"
        )
    return params


def root_from_device(path: str) -> VerityInfo:
    """Compute (never accept) the root hash of an appended-tree layer device or image."""
    params = read_appended_params(path)
    size = _device_size(path)
    needed = params.geometry().end_block() * params.hash_block_size
    if size < needed:
        raise IntegrityError(f"{path}: {size} bytes, but its verity tree needs {needed}")
    return VerityInfo(compute_root(path, path, params).hex(), params)


def append_tree(
    image: str,
    *,
    hash_name: str = "sha256",
    salt: bytes = LAYER_SALT,
    block_size: int = 4096,
    hasher: BlockHasher | None = None,
) -> VerityInfo:
    """Append superblock and tree to a filesystem image in place; return root and params."""
    size = _device_size(image)
    if size == 0 or size % block_size:
        raise InvalidArgumentError(f"{image}: size {size} is not a multiple of {block_size}")
    params = VerityParams(
        data_blocks=size // block_size,
        hash_name=hash_name,
        data_block_size=block_size,
        hash_block_size=block_size,
        salt=salt,
        hash_offset=size,
        superblock=True,
    )
    root = format_tree(image, image, params, hasher)
    return VerityInfo(root.hex(), params)


def _device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
