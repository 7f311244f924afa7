"""`guestagent init` end to end, for real, without touching the host: as PID 1 of fresh PID,
mount and UTS namespaces (unshare), where reboot(2) ends the namespace instead of the machine
(the kernel sends its init SIGINT), and as a plain process in a private mount namespace."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")]


def unshare(*flags: str) -> list[str]:
    binary = shutil.which("unshare")
    if binary is None:
        pytest.skip("unshare (util-linux) is not installed")
    return [binary, *flags, "--propagation", "private"]


def write_inputs(tmp_path: Path, cmdline: str) -> tuple[Path, Path]:
    cmdline_file = tmp_path / "cmdline"
    cmdline_file.write_text(cmdline + "\n")
    config = tmp_path / "agent.env"
    config.write_text("GUESTAGENT_LISTEN=serial://agent.0\n")
    return cmdline_file, config


def run_init(
    prefix: list[str], tmp_path: Path, cmdline: str, agent: str
) -> subprocess.CompletedProcess:
    cmdline_file, config = write_inputs(tmp_path, cmdline)
    argv = [sys.executable, "-m", "guestagent", "init", "--cmdline", str(cmdline_file)]
    argv += ["--config", str(config), "--", "sh", "-c", agent]
    return subprocess.run(
        prefix + argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


def test_as_pid1_it_brings_up_supervises_and_powers_off(tmp_path: Path) -> None:
    report = tmp_path / "report"
    agent = (
        f'echo "pid1=$(cat /proc/1/comm) ppid=$PPID host=$(hostname)" > {report}; '
        f'grep -E " /run tmpfs " /proc/mounts >> {report}; exit 4'
    )
    prefix = unshare("--pid", "--fork", "--mount", "--uts", "--mount-proc")
    done = run_init(prefix, tmp_path, "quiet guestagent.hostname=pid1test", agent)
    # reboot(POWER_OFF) by a PID namespace's init: the kernel kills that init with SIGINT.
    assert done.returncode in (-signal.SIGINT, 128 + signal.SIGINT), done.stderr
    lines = report.read_text().splitlines()
    comm = os.path.basename(sys.executable)[:15]  # the kernel's name for the process
    assert lines[0] == f"pid1={comm} ppid=1 host=pid1test"
    assert lines[1].startswith("tmpfs /run tmpfs")
    assert "agent (pid" in done.stderr and "ended unexpectedly: exit status 4" in done.stderr
    assert "power off: " in done.stderr
    assert os.uname().nodename != "pid1test"  # the host's UTS namespace was not touched


def test_bad_kernel_parameter_fails_closed_before_the_agent_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    prefix = unshare("--pid", "--fork", "--mount", "--uts", "--mount-proc")
    done = run_init(prefix, tmp_path, "guestagent.lisen=x", f"touch {marker}")
    assert done.returncode in (-signal.SIGINT, 128 + signal.SIGINT), done.stderr
    assert "unknown kernel parameter guestagent.lisen" in done.stderr
    assert not marker.exists()


def test_not_pid1_it_exits_nonzero_for_its_service_manager(tmp_path: Path) -> None:
    done = run_init(unshare("--mount"), tmp_path, "quiet", "exit 0")
    assert done.returncode == 1, done.stderr
    assert "agent supervision ended: agent (pid" in done.stderr
    assert "ended unexpectedly: exit status 0" in done.stderr
