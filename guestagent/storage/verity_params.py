"""dm-verity parameters, tree geometry and the veritysetup superblock (format 1).

The geometry mirrors cryptsetup's `hash_levels()` and the kernel's `verity_ctr()`: the number of
levels is the smallest L with (data_blocks - 1) >> (bits * L) == 0, so a single data block has no
tree at all and its root is H(salt || block). Levels are stored root-first after the superblock,
which occupies 512 bytes padded to one hash block.
"""

from __future__ import annotations

import hashlib
import struct

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.records import field, record

__all__ = [
    "SUPERBLOCK_SIZE",
    "SUPPORTED_HASHES",
    "VerityGeometry",
    "VerityParams",
    "pack_superblock",
    "parse_superblock",
]

SUPERBLOCK_SIZE = 512
SIGNATURE = b"verity\0\0"
MAX_SALT = 256
MIN_BLOCK, MAX_BLOCK = 512, 1 << 19
SUPPORTED_HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512")
# signature, version, hash_type, uuid, algorithm, data/hash block size, data_blocks, salt_size,
# pad, salt, pad (cryptsetup `struct verity_sb`)
_SB = struct.Struct("<8sII16s32sIIQH6s256s168s")
assert _SB.size == SUPERBLOCK_SIZE


def _is_block_size(value: int) -> bool:
    return MIN_BLOCK <= value <= MAX_BLOCK and value & (value - 1) == 0


@record
class VerityParams:
    """Everything needed besides the root hash to build, check or map a verity tree."""

    data_blocks: int
    hash_name: str = "sha256"
    data_block_size: int = 4096
    hash_block_size: int = 4096
    salt: bytes = b""
    hash_offset: int = 0  # bytes into the hash device where the superblock (or tree) starts
    superblock: bool = True
    uuid: bytes = field(default=bytes(16))
    hash_type: int = 1

    def __post_init__(self) -> None:
        if self.hash_type != 1:
            raise InvalidArgumentError(f"verity hash type {self.hash_type} unsupported (only 1)")
        if self.hash_name not in SUPPORTED_HASHES:
            raise InvalidArgumentError(f"unsupported verity hash algorithm {self.hash_name!r}")
        for name in ("data_block_size", "hash_block_size"):
            if not _is_block_size(getattr(self, name)):
                raise InvalidArgumentError(f"{name} must be a power of two in 512..{MAX_BLOCK}")
        if self.data_blocks < 1:
            raise InvalidArgumentError("verity needs at least one data block")
        if len(self.salt) > MAX_SALT:
            raise InvalidArgumentError(f"salt longer than {MAX_SALT} bytes")
        if self.hash_offset < 0 or self.hash_offset % 512:
            raise InvalidArgumentError("hash offset must be a non-negative multiple of 512")
        if len(self.uuid) != 16:
            raise InvalidArgumentError("uuid must be 16 bytes")
        if self.digest_stride > self.hash_block_size:
            raise InvalidArgumentError("hash block smaller than one digest")

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    @property
    def digest_stride(self) -> int:
        """Format 1 pads each digest to a power of two inside hash blocks."""
        return 1 << (self.digest_size - 1).bit_length()

    @property
    def data_size(self) -> int:
        return self.data_blocks * self.data_block_size

    @property
    def uuid_str(self) -> str:
        import uuid  # its import (platform) is not paid by an agent that never prints one

        return str(uuid.UUID(bytes=self.uuid))

    def geometry(self) -> VerityGeometry:
        return VerityGeometry.of(self)


@record
class VerityGeometry:
    """Where each level lives on the hash device, in hash blocks (level 0 = leaf digests)."""

    bits: int  # log2(digests per hash block)
    tree_start: int  # hash block index of the first tree block (the root block)
    level_start: tuple[int, ...]
    level_blocks: tuple[int, ...]

    @classmethod
    def of(cls, params: VerityParams) -> VerityGeometry:
        bits = (params.hash_block_size // params.digest_stride).bit_length() - 1
        n = params.data_blocks
        levels = 0
        while bits * levels < 64 and (n - 1) >> (bits * levels):
            levels += 1
        offset = params.hash_offset
        if params.superblock:
            offset += SUPERBLOCK_SIZE + params.hash_block_size - 1
        tree_start = offset // params.hash_block_size
        starts, sizes = [0] * levels, [0] * levels
        position = tree_start
        for level in reversed(range(levels)):
            shift = (level + 1) * bits
            starts[level] = position
            sizes[level] = (n + (1 << shift) - 1) >> shift
            position += sizes[level]
        return cls(bits, tree_start, tuple(starts), tuple(sizes))

    @property
    def levels(self) -> int:
        return len(self.level_start)

    @property
    def hash_blocks(self) -> int:
        return sum(self.level_blocks)

    def end_block(self) -> int:
        """First hash block after the tree: the hash device must be at least this long."""
        return self.tree_start + self.hash_blocks


def pack_superblock(params: VerityParams) -> bytes:
    return _SB.pack(
        SIGNATURE,
        1,
        params.hash_type,
        params.uuid,
        params.hash_name.encode(),
        params.data_block_size,
        params.hash_block_size,
        params.data_blocks,
        len(params.salt),
        bytes(6),
        params.salt,
        bytes(168),
    )


def parse_superblock(raw: bytes, hash_offset: int = 0) -> VerityParams:
    """Decode and validate an on-disk superblock; anything unexpected is an IntegrityError."""
    if len(raw) < SUPERBLOCK_SIZE:
        raise IntegrityError("verity superblock truncated")
    (sig, version, hash_type, uid, alg, dbs, hbs, blocks, salt_size, pad1, salt, pad2) = _SB.unpack(
        raw[:SUPERBLOCK_SIZE]
    )
    if sig != SIGNATURE:
        raise IntegrityError("no verity superblock (bad signature)")
    if version != 1:
        raise IntegrityError(f"verity superblock version {version} unsupported")
    if salt_size > MAX_SALT or any(salt[salt_size:]) or any(pad1) or any(pad2):
        raise IntegrityError("verity superblock has a bad salt size or non-zero padding")
    name, _, rest = alg.partition(b"\0")
    if any(rest):
        raise IntegrityError("verity superblock algorithm field is malformed")
    try:
        return VerityParams(
            data_blocks=blocks,
            hash_name=name.decode("ascii"),
            data_block_size=dbs,
            hash_block_size=hbs,
            salt=salt[:salt_size],
            hash_offset=hash_offset,
            superblock=True,
            uuid=uid,
            hash_type=hash_type,
        )
    except (InvalidArgumentError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"verity superblock rejected: {exc}") from exc
