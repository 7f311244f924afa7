"""`guestagent image measure`: the hashes QEMU puts in the SEV hash table, and an honest
answer when no AmdSev OVMF build exists (Debian ships none)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "guestagent", "image", "measure", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"kernel-bytes" * 1000)
    initrd.write_bytes(b"initrd-bytes" * 1000)
    return kernel, initrd


def measured(kernel: Path, initrd: Path, cmdline: str, *extra: str) -> dict:
    done = run(
        "--kernel", str(kernel), "--initrd", str(initrd), "--append", cmdline, "--json", *extra
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_hashes_are_those_of_the_files_and_the_nul_terminated_cmdline(images) -> None:
    kernel, initrd = images
    result = measured(kernel, initrd, "console=ttyS0 guestagent.root_hash=ab")
    assert result["kernel_sha256"] == hashlib.sha256(kernel.read_bytes()).hexdigest()
    assert result["initrd_sha256"] == hashlib.sha256(initrd.read_bytes()).hexdigest()
    expected = hashlib.sha256(b"console=ttyS0 guestagent.root_hash=ab\0").hexdigest()
    assert result["cmdline_sha256"] == expected
    assert "dm-verity root hash" in result["covers"]


def test_hash_table_binds_the_command_line(images) -> None:
    pytest.importorskip("sevsnpmeasure", reason="the optional extra `measure` is not installed")
    kernel, initrd = images
    one = measured(kernel, initrd, "guestagent.root_hash=aa")["hash_table_sha256"]
    two = measured(kernel, initrd, "guestagent.root_hash=ab")["hash_table_sha256"]
    assert len(one) == 64 and one != two


def test_debian_ovmf_has_no_kernel_hashes_section_and_says_so(images) -> None:
    pytest.importorskip("sevsnpmeasure", reason="the optional extra `measure` is not installed")
    debian = Path("/usr/share/ovmf/OVMF.fd")
    if not debian.exists():
        pytest.skip("Debian's ovmf package is not installed (tests/vm/prepare installs it)")
    kernel, initrd = images
    result = measured(kernel, initrd, "x", "--ovmf", str(debian))
    assert result["launch_digest"] is None
    assert "SNP_KERNEL_HASHES" in result["unavailable"]
    done = run(
        "--kernel",
        str(kernel),
        "--initrd",
        str(initrd),
        "--append",
        "x",
        "--ovmf",
        str(debian),
        "--require-digest",
    )
    assert done.returncode == 1


def test_missing_input_is_a_usage_error(images) -> None:
    kernel, _ = images
    done = run("--kernel", str(kernel), "--initrd", "/nonexistent", "--append", "x")
    assert done.returncode == 2 and "no such file: /nonexistent" in done.stdout
