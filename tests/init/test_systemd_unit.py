"""guestagent.service: systemd accepts it, and it keeps the fail-closed, notify and shared
configuration contract of the initramfs path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from guestagent.init.config import ENV_KEYS, parse_env_file
from guestagent.init.main import ENV_FILE

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "guestagent.service"


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def verify(unit: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed (tests/vm/prepare installs systemd)")
    return subprocess.run(
        [binary, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_accepts_the_unit() -> None:
    done = verify(UNIT)
    assert done.returncode == 0 and UNIT.name not in done.stderr, done.stderr


def test_systemd_analyze_verify_rejects_a_broken_copy(tmp_path: Path) -> None:
    broken = tmp_path / "guestagent.service"
    broken.write_text(UNIT.read_text().replace("Type=notify", "Type=notifyy"))
    done = verify(broken)
    assert "notifyy" in done.stderr, done.stderr


def test_fail_closed_notify_and_watchdog() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["all"]  # the agent is init's child
    assert unit["WatchdogSec"] == ["30s"]
    assert unit["FailureAction"] == ["poweroff"]
    assert unit["SuccessAction"] == ["poweroff"]
    assert unit["Restart"] == ["no"]
    assert unit["NoNewPrivileges"] == ["no"]  # runc execs containers with their own privileges
    for forbidden in ("PrivateDevices", "ProtectKernelModules", "RestrictNamespaces"):
        assert forbidden not in unit, f"{forbidden} would break mounts, modules or runc"


def test_same_configuration_as_the_initramfs_path() -> None:
    unit = directives(UNIT.read_text())
    assert unit["EnvironmentFile"] == [ENV_FILE]
    assert unit["ExecStart"] == [f"/usr/bin/python3 -m guestagent.init --config {ENV_FILE}"]
    shipped = parse_env_file((REPO / "systemd" / "agent.env").read_text())
    assert set(shipped) == ENV_KEYS
    assert shipped["GUESTAGENT_LISTEN"] == "serial://agent.0"
