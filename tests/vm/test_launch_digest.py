"""The tier's image measured with the firmware that can measure it: the firmware declares the
hashes page, `image measure` gives the digest a simulated launch of the same files carries,
the agent booted from those files reports it (QEMU, the simulated platform, hands the guest
its launch digest in fw_cfg), and docs/relying-party.md runs end to end on it (step 7:
accepted, and refused for another initramfs)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guest_images import REPO, GuestImages
from launch_image import BUILD_OVMF, launch_image

from guestagent.cli.simlaunch import FW_CFG_NAME
from guestagent.client.sync_client import Client
from guestagent.policy.measure import measure
from guestagent.records import replace
from guestagent.snp.launch import LaunchImage, has_kernel_hashes

pytestmark = [pytest.mark.vm, pytest.mark.slow]

DOC = REPO / "docs" / "relying-party.md"
CONSOLE_PORT = "console.0"
# Nothing may run; the debug console may give reports (what the relying party fetches here).
POLICY = {
    "version": 1,
    "containers": [],
    "debug_console": {"enabled": True, "commands": ["report"]},
}


def guestagent(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guestagent", *args],
        capture_output=True, text=True, check=check, cwd=REPO, timeout=300,
    )  # fmt: skip


def image_measure(image: LaunchImage) -> str:
    """What the host (and the relying party) computes: `image measure --digest`."""
    return guestagent(
        "image", "measure", "--digest", "--ovmf", str(image.ovmf), "--kernel", str(image.kernel),
        "--initrd", str(image.initrd), "--append", image.cmdline,
    ).stdout.strip()  # fmt: skip


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
    assert len(blocks) == 11
    (tmp_path / "examples").symlink_to(REPO / "examples")
    # Commands on PATH, not shell functions: step 7 runs the agent in the background and
    # stops it by its pid.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, argv in (("guestagent", "-m guestagent"), ("python3", "")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {argv} "$@"\n')
        (bin_dir / name).chmod(0o755)
    script = "\n".join(["set -euo pipefail", *blocks])
    files = {"OVMF": image.ovmf, "KERNEL": image.kernel, "INITRD": image.initrd}
    env = {**os.environ, "PYTHONPATH": str(REPO), "CMDLINE": image.cmdline}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.update({name: str(path) for name, path in files.items()})
    shell = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = shell.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):  # an agent a failed step left running
            os.killpg(shell.pid, signal.SIGTERM)
        shell.kill()
        shell.wait()
    done = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    digest = image.launch_digest().hex()
    agent_report = json.loads((tmp_path / "rp" / "agent-report.json").read_text())
    assert agent_report["report"]["measurement"] == digest
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


def test_the_booted_agent_reports_its_launch_digest(
    make_guest, vm_images: GuestImages, vm_firmware: Path, tmp_path: Path
) -> None:
    """The host measures exactly what it boots (the agent's arguments are on the measured
    command line), hands the digest to the simulated guest in fw_cfg, and the relying party
    verifies the AGENT's report, fetched from the guest, against it; the digest of the same
    image with another initramfs is refused."""
    policy = json.dumps(POLICY).encode()
    (tmp_path / "policy.json").write_bytes(policy)
    host_data = guestagent("policy", "hash", str(tmp_path / "policy.json")).stdout.strip()
    assert host_data == measure(policy).host_data_hex
    serve_args = (
        f"--snp sim --sim-state /run/guestagent-sim --sim-host-data {host_data} "
        f"--sim-measurement-from-fw-cfg --console serial://{CONSOLE_PORT}"
    )
    cmdline = f'guestagent.serve_args="{serve_args}"'
    image = launch_image(vm_images, vm_firmware, cmdline)
    digest = image_measure(image)
    handed = tmp_path / "launch-measurement"
    handed.write_text(digest + "\n")
    guest = make_guest(cmdline=cmdline, fw_cfg={FW_CFG_NAME: handed}, ports=(CONSOLE_PORT,))
    assert guest.append == image.cmdline  # the digest is of the very command line booted
    # Both ports are connected before the agent opens them (see test_agent.py for why).
    agent_sock = guest.connect_channel()
    console_sock = guest.connect_channel(port=CONSOLE_PORT)
    try:
        guest.wait_for_console(r'"msg":"listening"', timeout=300)
        guest.wait_for_console(r"debug console listening", timeout=60)
        time.sleep(1.0)
        agent_sock.settimeout(300)
        console_sock.settimeout(300)
        with Client(agent_sock) as agent:
            agent.hello()
            assert agent.call("set_policy", {"policy": policy})["digest"] == host_data
            nonce = os.urandom(64)
            with Client(console_sock) as console:
                assert "debug console" in str(console.hello().get("agent"))
                reply = console.call("report", {"report_data": nonce})
    except BaseException:
        print(guest.console()[-8000:])  # the agent's log is on the guest's console
        raise
    assert reply["snp"]["simulated"] is True
    assert reply["report"]["measurement"] == digest
    (tmp_path / "report.bin").write_bytes(reply["raw"])
    certs = reply["certificates"]
    (tmp_path / "vcek.pem").write_text(certs["vcek"])
    (tmp_path / "ask_ark.pem").write_text(certs["ask"] + certs["ark"])
    # The simulated chip was born in the guest: its root has no other source than the guest.
    # Hardware pins AMD's root instead (docs/relying-party.md step 4).
    (tmp_path / "ark.pem").write_text(certs["ark"])
    verify = [
        "report",
        "verify",
        str(tmp_path / "report.bin"),
        "--cert",
        str(tmp_path / "vcek.pem"),
    ]
    verify += [
        "--chain",
        str(tmp_path / "ask_ark.pem"),
        "--trust-sim-root",
        str(tmp_path / "ark.pem"),
    ]
    done = guestagent(
        *verify, "--expect-measurement", digest, "--expect-host-data", host_data,
        "--expect-report-data", nonce.hex(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification PASSED" in done.stdout

    other_initrd = tmp_path / "other-initrd.img"
    other_initrd.write_bytes(image.initrd.read_bytes() + b"x")
    other = image_measure(replace(image, initrd=other_initrd))
    assert other != digest
    refused = guestagent(
        *verify, "--expect-measurement", other, "--expect-host-data", host_data, check=False
    )
    assert refused.returncode == 1
    assert f"report.measurement: FAILED (expected {other}" in refused.stderr
