"""Layer images: reproducible bytes, safe extraction, appended tree, root from the device."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from storage_helpers import directory, hardlink, reg, require, symlink, write_tar

from guestagent.errors import IntegrityError
from guestagent.storage.layer import build_layer
from guestagent.storage.tar_extract import LayerTarError, extract_layer
from guestagent.storage.verity import verify
from guestagent.storage.verity_device import filesystem_size, root_from_device

pytestmark = pytest.mark.root

MEMBERS = [
    directory("etc/"),
    reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    reg("etc/owned", b"user file", uid=1000, gid=1000, mode=0o600, mtime=1_700_000_000),
    directory("usr/bin/"),
    reg("usr/bin/tool", b"#!/bin/sh\necho hi\n" * 500, mode=0o4755),
    hardlink("usr/bin/tool2", "usr/bin/tool"),
    symlink("bin", "usr/bin"),
    reg("big", b"x" * (3 << 20)),
]


def _need_tools() -> None:
    require("mkfs.erofs")
    if os.geteuid() != 0:
        pytest.skip("layer extraction sets ownership and xattrs: needs root")


def test_same_input_gives_same_bytes_in_different_directories(tmp_path):
    _need_tools()
    images = []
    for name in ("one", "two"):
        where = tmp_path / name / "deeper"
        where.mkdir(parents=True)
        tar = write_tar(where / "layer.tar.gz", MEMBERS, mode="w:gz")
        image = build_layer(str(tar), str(where / "layer.img"), work_dir=str(where))
        images.append(image)
    first, second = (Path(image.path).read_bytes() for image in images)
    assert first == second
    assert images[0].root_hash == images[1].root_hash
    # The root is over the whole filesystem: a one-byte change in a file changes it.
    changed = [*MEMBERS[:-1], reg("big", b"y" + b"x" * ((3 << 20) - 1))]
    tar = write_tar(tmp_path / "changed.tar", changed)
    assert build_layer(str(tar), str(tmp_path / "c.img")).root_hash != images[0].root_hash


def test_directory_source_is_reproducible_and_keeps_metadata(tmp_path):
    _need_tools()
    roots = []
    for name in ("a", "b"):
        src = tmp_path / name / "src"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "file").write_text("content")
        os.chown(src / "sub" / "file", 123, 456)
        for path in (src / "sub" / "file", src / "sub", src):
            os.utime(path, (1000, 1000))
        roots.append(build_layer(str(src), str(tmp_path / name / "img")).root_hash)
    assert roots[0] == roots[1]
    assert (tmp_path / "a" / "img").read_bytes() == (tmp_path / "b" / "img").read_bytes()


def test_root_from_device_recomputes_and_full_verify_passes(tmp_path):
    _need_tools()
    image = build_layer(str(write_tar(tmp_path / "l.tar", MEMBERS)), str(tmp_path / "l.img"))
    info = root_from_device(image.path)
    assert info.root_hash == image.root_hash
    assert filesystem_size(image.path) == image.fs_size == info.params.data_size
    assert info.params.hash_offset == image.fs_size and info.params.salt == bytes(32)
    verify(image.path, image.path, bytes.fromhex(info.root_hash), info.params)


def test_cli_verity_matches_veritysetup_on_layer_image(tmp_path):
    _need_tools()
    vs = require("veritysetup")
    image = build_layer(str(write_tar(tmp_path / "l.tar", MEMBERS)), str(tmp_path / "l.img"))
    out = subprocess.run(
        [vs, "verify", image.path, image.path, image.root_hash, f"--hash-offset={image.fs_size}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_tampered_image_byte_is_detected(tmp_path):
    _need_tools()
    image = build_layer(str(write_tar(tmp_path / "l.tar", MEMBERS)), str(tmp_path / "l.img"))
    info = root_from_device(image.path)
    with open(image.path, "r+b") as fh:
        fh.seek(image.fs_size - 4096 + 10)  # inside the last data block of the file system
        fh.write(b"\xff")
    with pytest.raises(IntegrityError) as err:
        verify(image.path, image.path, bytes.fromhex(info.root_hash), info.params)
    assert err.value.details["block"] == image.fs_size // 4096 - 1


def test_superblock_not_matching_filesystem_size_is_refused(tmp_path):
    _need_tools()
    image = build_layer(str(write_tar(tmp_path / "l.tar", MEMBERS)), str(tmp_path / "l.img"))
    with open(image.path, "r+b") as fh:  # data_blocks field of the verity superblock
        fh.seek(image.fs_size + 72)
        fh.write((image.fs_size // 4096 - 1).to_bytes(8, "little"))
    with pytest.raises(IntegrityError, match="covers"):
        root_from_device(image.path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([reg("/etc/passwd", b"x")], "absolute"),
        ([reg("a/../../escape", b"x")], r"'\.\.'"),
        ([symlink("link", "/etc"), reg("link/passwd", b"x")], "non-directory"),
        ([hardlink("stolen", "../../etc/shadow")], r"'\.\.'"),
        ([hardlink("stolen", "missing")], "earlier regular file"),
        ([("dev/sda", None, tarfile.BLKTYPE, {"devmajor": 8, "devminor": 0})], "device node"),
        ([("dev/null", None, tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3})], "device node"),
        ([reg("x", b"1"), reg(".wh.x", b"")], "also holds"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, members, message):
    _need_tools()
    tar = write_tar(tmp_path / "evil.tar", members)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(LayerTarError, match=message):
        extract_layer(str(tar), str(staging))
    assert not (tmp_path / "escape").exists()


def test_whiteouts_become_overlay_whiteouts(tmp_path):
    _need_tools()
    tar = write_tar(
        tmp_path / "l.tar",
        [reg("etc/.wh.gone", b""), reg("opt/.wh..wh..opq", b""), reg("opt/new", b"n")],
    )
    staging = tmp_path / "s"
    staging.mkdir()
    extract_layer(str(tar), str(staging))
    gone = os.lstat(staging / "etc" / "gone")
    assert os.major(gone.st_rdev) == 0 and os.minor(gone.st_rdev) == 0
    assert os.getxattr(staging / "opt", "trusted.overlay.opaque") == b"y"
    assert not (staging / "etc" / ".wh.gone").exists()
