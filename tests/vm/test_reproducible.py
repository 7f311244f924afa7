"""Same inputs, same bytes: the initramfs, the packed root filesystem (and so its dm-verity
root hash) and the OVMF firmware rebuild identically, so the image's SEV-SNP launch digest
does too; one byte more or less in what the host launches moves the digest. The debootstrap
tree itself is not reproducible (package versions move, maintainer scripts write caches); the
pack step is, given the same tree."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from guest_images import SCRIPTS, GuestImages, read_env
from launch_image import BUILD_OVMF, launch_image

from guestagent.records import replace as record_replace  # LaunchImage is a record

pytestmark = [pytest.mark.vm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def rebuilt(
    vm_images: GuestImages, vm_firmware: Path, tmp_path_factory
) -> tuple[GuestImages, Path]:
    """A second build of the image from the same inputs: initramfs, rootfs (from the cached
    tree) and the firmware from scratch (the script always starts from a clean tree)."""
    out = tmp_path_factory.mktemp("rebuilt")
    kernel_dir = vm_images.kernel.parent
    initramfs = out / "initramfs.cpio.gz"
    subprocess.run(
        [str(SCRIPTS / "build-initramfs.sh"), str(kernel_dir), str(initramfs)], check=True
    )
    tree = next(vm_images.rootfs.parents[1].glob("tree-*/tree"))
    rootfs = out / "rootfs"
    subprocess.run([str(SCRIPTS / "pack-rootfs.sh"), str(tree), str(REPO), str(rootfs)], check=True)
    firmware = out / "ovmf"
    subprocess.run(["bash", str(BUILD_OVMF), str(firmware)], check=True)
    images = replace(
        vm_images,
        initramfs=initramfs,
        rootfs=rootfs / "rootfs.img",
        root_env=read_env(rootfs / "rootfs.env"),
    )
    return images, firmware / "OVMF.fd"


def test_initramfs_rebuilds_bit_for_bit(vm_images: GuestImages, rebuilt) -> None:
    assert sha256(rebuilt[0].initramfs) == sha256(vm_images.initramfs)


def test_rootfs_repacks_to_the_same_image_and_root_hash(vm_images: GuestImages, rebuilt) -> None:
    assert rebuilt[0].root_env == vm_images.root_env
    assert sha256(rebuilt[0].rootfs) == sha256(vm_images.rootfs)


def test_firmware_rebuilds_bit_for_bit(vm_firmware: Path, rebuilt) -> None:
    assert sha256(rebuilt[1]) == sha256(vm_firmware)


def test_two_builds_of_the_image_have_one_launch_digest(
    vm_images: GuestImages, vm_firmware: Path, rebuilt
) -> None:
    first = launch_image(vm_images, vm_firmware)
    second = launch_image(*rebuilt)
    assert first.cmdline == second.cmdline
    assert first.launch_digest() == second.launch_digest()
    print(f"\nlaunch digest of the tier's image: {first.launch_digest().hex()}")


def test_one_byte_of_initramfs_or_cmdline_moves_the_launch_digest(
    vm_images: GuestImages, vm_firmware: Path, tmp_path: Path
) -> None:
    image = launch_image(vm_images, vm_firmware)
    digest = image.launch_digest()
    data = bytearray(vm_images.initramfs.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped = tmp_path / "initramfs.cpio.gz"
    flipped.write_bytes(data)
    assert record_replace(image, initrd=flipped).launch_digest() != digest
    # One character of the verity root hash: another root filesystem.
    root_hash = vm_images.root_env["ROOT_HASH"]
    other = root_hash[:-1] + ("0" if root_hash[-1] != "0" else "1")
    moved = record_replace(image, cmdline=image.cmdline.replace(root_hash, other))
    assert moved.launch_digest() != digest
    assert record_replace(image, cmdline=image.cmdline + " ").launch_digest() != digest
