"""Our verity trees against veritysetup (the oracle) and against a tiny reference model."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import FIXED_UUID, require, veritysetup_format

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.storage.verity import compute_root, format_tree, verify, verify_block
from guestagent.storage.verity_hash import BlockHasher
from guestagent.storage.verity_params import VerityParams, pack_superblock, parse_superblock

SERIAL = BlockHasher(workers=1)
POOL = BlockHasher(workers=2, chunk_bytes=64 << 10, pool_threshold=0)


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(hashlib.shake_256(f"{seed}:{size}".encode()).digest(size))
    return path


def ours(data: Path, hash_path: Path, blocks: int, hasher: BlockHasher = SERIAL, **kw) -> str:
    params = VerityParams(data_blocks=blocks, **kw)
    return format_tree(str(data), str(hash_path), params, hasher).hex()


@pytest.mark.parametrize("blocks", [1, 2, 127, 128, 129, 16385])
@pytest.mark.parametrize("hash_name", ["sha256", "sha512"])
@pytest.mark.parametrize("salt", ["-", "00" * 32, "a5c3"])
def test_matches_veritysetup_without_superblock(tmp_path, blocks, hash_name, salt):
    vs = require("veritysetup")
    data = write_random(tmp_path / "data", blocks * 4096, blocks)
    theirs = veritysetup_format(
        vs, data, tmp_path / "h1", "--no-superblock", f"--hash={hash_name}", f"--salt={salt}"
    )
    salt_bytes = b"" if salt == "-" else bytes.fromhex(salt)
    root = ours(
        data, tmp_path / "h2", blocks, hash_name=hash_name, salt=salt_bytes, superblock=False
    )
    assert root == theirs
    assert (tmp_path / "h1").read_bytes() == (tmp_path / "h2").read_bytes()


@pytest.mark.parametrize(("blocks", "hash_name"), [(1, "sha256"), (129, "sha256"), (300, "sha512")])
@pytest.mark.parametrize("hash_offset", [0, 8192])
def test_matches_veritysetup_with_superblock(tmp_path, blocks, hash_name, hash_offset):
    vs = require("veritysetup")
    data = write_random(tmp_path / "data", blocks * 4096)
    salt = "11" * 32
    args = [f"--hash={hash_name}", f"--salt={salt}", f"--uuid={FIXED_UUID}"]
    theirs = veritysetup_format(vs, data, tmp_path / "h1", *args, f"--hash-offset={hash_offset}")
    root = ours(
        data,
        tmp_path / "h2",
        blocks,
        hash_name=hash_name,
        salt=bytes.fromhex(salt),
        hash_offset=hash_offset,
        uuid=uuid.UUID(FIXED_UUID).bytes,
    )
    assert root == theirs
    assert (tmp_path / "h1").read_bytes() == (tmp_path / "h2").read_bytes()


@pytest.mark.parametrize(("data_bs", "hash_bs"), [(512, 4096), (4096, 1024), (1024, 1024)])
def test_matches_veritysetup_other_block_sizes(tmp_path, data_bs, hash_bs):
    vs = require("veritysetup")
    blocks = 700
    data = write_random(tmp_path / "data", blocks * data_bs)
    theirs = veritysetup_format(
        vs,
        data,
        tmp_path / "h1",
        "--salt=abcd",
        f"--uuid={FIXED_UUID}",
        f"--data-block-size={data_bs}",
        f"--hash-block-size={hash_bs}",
    )
    root = ours(
        data,
        tmp_path / "h2",
        blocks,
        salt=b"\xab\xcd",
        data_block_size=data_bs,
        hash_block_size=hash_bs,
        uuid=uuid.UUID(FIXED_UUID).bytes,
    )
    assert root == theirs
    assert (tmp_path / "h1").read_bytes() == (tmp_path / "h2").read_bytes()


def test_process_pool_gives_identical_tree(tmp_path):
    vs = require("veritysetup")
    data = write_random(tmp_path / "data", 3000 * 4096 + 4096)
    theirs = veritysetup_format(vs, data, tmp_path / "h1", "--salt=-", "--no-superblock")
    assert ours(data, tmp_path / "h2", 3001, POOL, superblock=False) == theirs
    assert (tmp_path / "h1").read_bytes() == (tmp_path / "h2").read_bytes()


def test_appended_layout_same_file_matches_veritysetup(tmp_path):
    vs = require("veritysetup")
    blocks = 200
    a = write_random(tmp_path / "a.img", blocks * 4096)
    b = tmp_path / "b.img"
    b.write_bytes(a.read_bytes())
    off = blocks * 4096
    theirs = veritysetup_format(
        vs,
        a,
        a,
        f"--hash-offset={off}",
        f"--data-blocks={blocks}",
        "--salt=-",
        f"--uuid={FIXED_UUID}",
    )
    root = ours(b, b, blocks, hash_offset=off, uuid=uuid.UUID(FIXED_UUID).bytes)
    assert root == theirs and a.read_bytes() == b.read_bytes()


def _tree(tmp_path: Path, blocks: int, **kw) -> tuple[Path, Path, bytes, VerityParams]:
    data = write_random(tmp_path / "data", blocks * 4096, 7)
    params = VerityParams(data_blocks=blocks, salt=b"salt", **kw)
    root = format_tree(str(data), str(tmp_path / "hash"), params, SERIAL)
    return data, tmp_path / "hash", root, params


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_verify_accepts_intact_tree(tmp_path):
    data, hash_path, root, params = _tree(tmp_path, 20000)
    verify(str(data), str(hash_path), root, params, POOL)
    verify_block(str(data), str(hash_path), root, params, 19999)


@pytest.mark.parametrize("hasher", [SERIAL, POOL], ids=["serial", "pool"])
def test_tampered_data_block_is_named(tmp_path, hasher):
    data, hash_path, root, params = _tree(tmp_path, 20000)
    _flip(data, 12345 * 4096 + 17)
    with pytest.raises(IntegrityError) as err:
        verify(str(data), str(hash_path), root, params, hasher)
    assert err.value.details == {"kind": "data", "block": 12345, "level": None}
    assert "data block 12345" in err.value.message
    verify_block(str(data), str(hash_path), root, params, 12344)  # neighbours still fine
    with pytest.raises(IntegrityError, match="data block 12345"):
        verify_block(str(data), str(hash_path), root, params, 12345)


def test_tampered_hash_block_is_named(tmp_path):
    data, hash_path, root, params = _tree(tmp_path, 20000)
    geo = params.geometry()  # levels: [157 leaf blocks, 2, 1 root] after a superblock
    assert geo.levels == 3
    bad = geo.level_start[0] + 100
    _flip(hash_path, bad * 4096 + 5)
    with pytest.raises(IntegrityError) as err:
        verify(str(data), str(hash_path), root, params)
    assert err.value.details == {"kind": "hash", "block": bad, "level": 0}
    with pytest.raises(IntegrityError, match=f"hash block {bad}"):
        verify_block(str(data), str(hash_path), root, params, 100 * 128)


def test_wrong_root_and_truncated_tree_fail(tmp_path):
    data, hash_path, root, params = _tree(tmp_path, 300)
    with pytest.raises(IntegrityError, match="root hash"):
        verify(str(data), str(hash_path), bytes(32), params)
    os.truncate(hash_path, 4096 * 2)
    with pytest.raises(IntegrityError, match="shorter"):
        verify(str(data), str(hash_path), root, params)


def test_single_block_root_is_hash_of_the_block(tmp_path):
    data, hash_path, root, params = _tree(tmp_path, 1)
    assert root == hashlib.sha256(b"salt" + data.read_bytes()).digest()
    assert compute_root(str(data), str(hash_path), params) == root


def test_superblock_roundtrip_and_rejections():
    params = VerityParams(data_blocks=5, salt=b"\x01" * 40, hash_name="sha512", uuid=b"u" * 16)
    raw = pack_superblock(params)
    assert len(raw) == 512 and raw[:8] == b"verity\0\0"
    assert parse_superblock(raw) == params
    for offset, value in [(0, b"X"), (8, b"\x02"), (12, b"\x00"), (83, b"\x01"), (400, b"\x01")]:
        bad = raw[:offset] + value + raw[offset + 1 :]
        with pytest.raises(IntegrityError):
            parse_superblock(bad)
    with pytest.raises(IntegrityError):
        parse_superblock(raw.replace(b"sha512", b"md5\0\0\0"))


def test_invalid_params_rejected():
    with pytest.raises(InvalidArgumentError):
        VerityParams(data_blocks=0)
    with pytest.raises(InvalidArgumentError):
        VerityParams(data_blocks=1, data_block_size=3000)
    with pytest.raises(InvalidArgumentError):
        VerityParams(data_blocks=1, hash_name="md5")


def reference_tree(data: bytes, salt: bytes, hash_name: str, bs: int) -> tuple[bytes, bytes]:
    """Textbook format-1 tree: hash, pad each level to blocks, repeat until one block."""

    def h(block: bytes) -> bytes:
        return hashlib.new(hash_name, salt + block).digest()

    blocks = [data[i : i + bs] for i in range(0, len(data), bs)]
    if len(blocks) == 1:
        return h(blocks[0]), b""
    stride = 1 << (hashlib.new(hash_name).digest_size - 1).bit_length()
    levels = []
    while True:
        packed = b"".join(h(b).ljust(stride, b"\0") for b in blocks)
        packed = packed.ljust(-(-len(packed) // bs) * bs, b"\0")
        levels.append(packed)
        if len(packed) == bs:
            return h(packed), b"".join(reversed(levels))
        blocks = [packed[i : i + bs] for i in range(0, len(packed), bs)]


@settings(max_examples=40, deadline=None)
@given(
    blocks=st.integers(min_value=1, max_value=300),
    salt=st.binary(max_size=64),
    hash_name=st.sampled_from(["sha256", "sha512", "sha1"]),
    bs=st.sampled_from([512, 1024]),
    seed=st.integers(0, 1000),
)
def test_tree_matches_reference_model(tmp_path_factory, blocks, salt, hash_name, bs, seed):
    tmp = tmp_path_factory.mktemp("hyp")
    data = write_random(tmp / "data", blocks * bs, seed)
    params = VerityParams(
        data_blocks=blocks,
        salt=salt,
        hash_name=hash_name,
        data_block_size=bs,
        hash_block_size=bs,
        superblock=False,
    )
    root = format_tree(str(data), str(tmp / "hash"), params, SERIAL)
    want_root, want_tree = reference_tree(data.read_bytes(), salt, hash_name, bs)
    assert root == want_root
    assert (tmp / "hash").read_bytes() == want_tree
