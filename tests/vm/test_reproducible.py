"""Same inputs, same bytes: the initramfs and the packed root filesystem (and so its dm-verity
root hash) rebuild identically. The debootstrap tree itself is not reproducible (package
versions move, maintainer scripts write caches); the pack step is, given the same tree."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from guest_images import SCRIPTS, GuestImages, read_env

pytestmark = [pytest.mark.vm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_initramfs_rebuilds_bit_for_bit(vm_images: GuestImages, tmp_path: Path) -> None:
    again = tmp_path / "initramfs.cpio.gz"
    kernel_dir = vm_images.kernel.parent
    subprocess.run([str(SCRIPTS / "build-initramfs.sh"), str(kernel_dir), str(again)], check=True)
    assert sha256(again) == sha256(vm_images.initramfs)


def test_rootfs_repacks_to_the_same_image_and_root_hash(vm_images: GuestImages, tmp_path) -> None:
    tree = next(vm_images.rootfs.parents[1].glob("tree-*/tree"))
    subprocess.run(
        [str(SCRIPTS / "pack-rootfs.sh"), str(tree), str(REPO), str(tmp_path)], check=True
    )
    assert read_env(tmp_path / "rootfs.env") == vm_images.root_env
    assert sha256(tmp_path / "rootfs.img") == sha256(vm_images.rootfs)
