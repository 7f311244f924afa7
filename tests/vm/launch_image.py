"""The firmware that measures the tier's image, and the image's SEV-SNP launch digest.

`build_firmware()` runs scripts/build-ovmf.sh once per set of inputs (the script and what its
`--inputs` prints: pinned source, toolchain versions) and caches OVMF.fd beside the other
images. `launch_image()` is what a host launches: that firmware, the tier's kernel and
initramfs, and the command line that binds the verity root filesystem.

    python3 tests/vm/launch_image.py    # build (or reuse) everything; print files and digest
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from guest_images import REPO, GuestImages, _cached, _run, build_images, rootfs_cmdline

from guestagent.snp.launch import LaunchImage

__all__ = ["BUILD_OVMF", "IMAGE_CMDLINE", "build_firmware", "launch_image"]

BUILD_OVMF = REPO / "scripts" / "build-ovmf.sh"
# The kernel parameters of the image itself, before the verity root's (what the tier boots).
IMAGE_CMDLINE = "console=ttyS0 panic=-1"


def firmware_key() -> str:
    inputs = subprocess.run(
        ["bash", str(BUILD_OVMF), "--inputs"], capture_output=True, text=True, check=True
    ).stdout
    return hashlib.sha256(BUILD_OVMF.read_bytes() + b"\0" + inputs.encode()).hexdigest()


def build_firmware() -> Path:
    """OVMF.fd of the AmdSevX64 build (cached by its inputs; CI builds it from scratch)."""

    def build(tmp: Path) -> None:
        _run(["bash", str(BUILD_OVMF), str(tmp)], tmp / "build.log")

    return _cached("ovmf", firmware_key(), build) / "OVMF.fd"


def image_cmdline(root_env: dict[str, str], extra: str = "") -> str:
    """The exact command line QEMU is given (and the hash table holds)."""
    return " ".join(filter(None, (IMAGE_CMDLINE, rootfs_cmdline(root_env), extra.strip())))


def launch_image(images: GuestImages, firmware: Path, extra: str = "") -> LaunchImage:
    return LaunchImage(
        ovmf=firmware,
        kernel=images.kernel,
        initrd=images.initramfs,
        cmdline=image_cmdline(images.root_env, extra),
    )


def main() -> int:
    image = launch_image(build_images(), build_firmware())
    print(f"ovmf:    {image.ovmf}")
    print(f"kernel:  {image.kernel}")
    print(f"initrd:  {image.initrd}")
    print(f"cmdline: {image.cmdline}")
    for name, value in image.input_hashes().items():
        print(f"{name}: {value}")
    print(f"launch_digest: {image.launch_digest().hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
