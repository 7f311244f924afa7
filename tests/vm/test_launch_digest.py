"""The tier's image measured with the firmware that can measure it: the firmware declares the
hashes page, `image measure` gives the digest a simulated launch of the same files carries,
and docs/relying-party.md runs end to end on it (step 7: accepted, and refused for another
initramfs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from guest_images import REPO, GuestImages
from launch_image import BUILD_OVMF, launch_image

from guestagent.snp.launch import has_kernel_hashes

pytestmark = [pytest.mark.vm, pytest.mark.slow]

DOC = REPO / "docs" / "relying-party.md"


def test_firmware_declares_the_kernel_hashes_page(vm_firmware: Path) -> None:
    assert vm_firmware.stat().st_size == 4 << 20
    assert has_kernel_hashes(vm_firmware)
    manifest = (vm_firmware.parent / "ovmf.manifest").read_text()
    assert "edk2=2025.02-8+deb13u1" in manifest


def test_image_measure_prints_the_digest_of_the_tier_image(
    vm_images: GuestImages, vm_firmware: Path
) -> None:
    image = launch_image(vm_images, vm_firmware)
    done = subprocess.run(
        [sys.executable, "-m", "guestagent", "image", "measure", "--json", "--ovmf",
         str(image.ovmf), "--kernel", str(image.kernel), "--initrd", str(image.initrd),
         "--append", image.cmdline],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["launch_digest"] == image.launch_digest().hex()
    assert len(result["launch_digest"]) == 96
    assert result["ovmf_sha256"] == image.input_hashes()["ovmf_sha256"]
    assert vm_images.root_env["ROOT_HASH"] in result["cmdline"]


def test_relying_party_walkthrough_checks_the_launch_measurement(
    vm_images: GuestImages, vm_firmware: Path, tmp_path: Path
) -> None:
    image = launch_image(vm_images, vm_firmware)
    blocks = re.findall(r"```sh(?: launch)?\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 10
    (tmp_path / "examples").symlink_to(REPO / "examples")
    script = "\n".join(
        [
            "set -euo pipefail",
            f'guestagent() {{ "{sys.executable}" -m guestagent "$@"; }}',
            f'python3() {{ "{sys.executable}" "$@"; }}',
            *blocks,
        ]
    )
    files = {"OVMF": image.ovmf, "KERNEL": image.kernel, "INITRD": image.initrd}
    env = {**os.environ, "PYTHONPATH": str(REPO), "CMDLINE": image.cmdline}
    env.update({name: str(path) for name, path in files.items()})
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    digest = image.launch_digest().hex()
    assert f"expected MEASUREMENT {digest}" in done.stdout
    assert done.stdout.count("verification PASSED") == 2
    assert "refused: MEASUREMENT is not the launch digest of the published image" in done.stdout
    assert f"check failed: report.measurement: FAILED (expected {digest}" in done.stderr


def test_build_script_names_the_version_and_hashes_when_the_source_is_gone(
    tmp_path: Path,
) -> None:
    """Debian drops a version from a suite's Sources after a point release: the build stops
    and says what it was pinned to (the real index, asked for a version it does not list)."""
    script = (
        f"source {BUILD_OVMF}; EDK2_VERSION=2025.02-0gone; BUILD_ROOT={tmp_path}; "
        f"mkdir -p {tmp_path}/src; fetch_source {tmp_path}/src"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "edk2 2025.02-0gone: no longer listed in trixie's Sources index" in done.stderr
    for line in ("edk2_2025.02.orig.tar.xz     sha256 b63b6053", "debian.tar.xz  sha256 e2a7f6fc"):
        assert line in done.stderr
    assert "OVMF_SOURCE_DIR" in done.stderr
