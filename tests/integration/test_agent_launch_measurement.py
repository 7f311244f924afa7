"""The agent's own reports carry the launch it was told it had: `serve --snp sim` with a
MEASUREMENT signs it into every report (adoption and the console's `report`), and the relying
party's check (`report verify --expect-measurement --expect-host-data`) accepts that report
and refuses it against another launch digest."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from guestagent.cli.simlaunch import platform_measurement
from guestagent.client import Client
from guestagent.errors import InvalidArgumentError
from guestagent.policy.measure import measure
from tests.integration.agent_process import running_agent, wait_for_socket

REPO = Path(__file__).resolve().parents[2]
POLICY = {
    "version": 1,
    "containers": [],
    "debug_console": {"enabled": True, "commands": ["report"]},
}


def guestagent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guestagent", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def fetch_report(console_uri: str, report_data: bytes, out: Path) -> dict:
    """The console's `report`, split into the files `report verify` reads."""
    with Client.connect(console_uri, hello=False) as client:
        client.hello()
        reply = client.call("report", {"report_data": report_data})
    (out / "report.bin").write_bytes(reply["raw"])
    certs = reply["certificates"]
    (out / "vcek.pem").write_text(certs["vcek"])
    (out / "ask_ark.pem").write_text(certs["ask"] + certs["ark"])
    return reply


def verify(out: Path, trusted: Path, *expect: str) -> subprocess.CompletedProcess[str]:
    return guestagent(
        "report", "verify", str(out / "report.bin"), "--cert", str(out / "vcek.pem"),
        "--chain", str(out / "ask_ark.pem"), "--trust-sim-root", str(trusted / "ark.pem"), *expect,
    )  # fmt: skip


def test_served_reports_carry_the_launch_measurement(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    host_data = measure(policy.read_bytes()).host_data_hex
    measurement = secrets.token_bytes(48).hex()
    sim = tmp_path / "sim"
    sim.mkdir(mode=0o700)
    console = Path(tempfile.mkdtemp(prefix="ga-con-")) / "c.sock"
    args = ["--snp", "sim", "--sim-state", str(sim), "--sim-host-data", host_data]
    args += ["--sim-measurement", measurement, "--policy", str(policy), "--no-containers"]
    with running_agent(*args, "--console", f"unix://{console}") as agent:
        wait_for_socket(str(console), agent.process)
        with Client.connect(agent.uri) as client:
            assert client.status()["policy"]["state"] == "enforcing"  # adopted over a report
        nonce = secrets.token_bytes(64)
        reply = fetch_report(f"unix://{console}", nonce, tmp_path)
    console.parent.rmdir()
    assert reply["report"]["measurement"] == measurement
    assert reply["snp"]["simulated"] is True
    trusted = tmp_path / "trusted"  # the simulated chip's root, from its state: out of band
    assert (
        guestagent("report", "sim-certs", "--sim-state", str(sim), "-o", str(trusted)).returncode
        == 0
    )

    done = verify(
        tmp_path, trusted, "--expect-measurement", measurement, "--expect-host-data", host_data,
        "--expect-report-data", nonce.hex(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification PASSED" in done.stdout

    other = secrets.token_bytes(48).hex()
    refused = verify(tmp_path, trusted, "--expect-measurement", other)
    assert refused.returncode == 1
    assert f"report.measurement: FAILED (expected {other}" in refused.stderr
    assert measurement in refused.stderr


def test_launch_options_need_the_simulator_and_one_source(tmp_path: Path) -> None:
    digest = "ab" * 48
    done = guestagent("serve", "--snp", "none", "--sim-measurement", digest)
    assert done.returncode == 2
    assert "need --snp sim" in done.stderr
    sim = ["serve", "--snp", "sim", "--sim-state", str(tmp_path)]
    done = guestagent(*sim, "--sim-measurement", digest, "--sim-measurement-from-fw-cfg")
    assert done.returncode == 2
    assert "choose one" in done.stderr
    done = guestagent(*sim, "--sim-measurement", "ab" * 47)
    assert done.returncode == 2
    assert "--sim-measurement: need 48 bytes, got 47" in done.stderr
    done = guestagent(*sim, "--sim-kernel", str(tmp_path / "k"))
    assert done.returncode == 2
    assert "needs --sim-ovmf, --sim-kernel, --sim-initrd and --sim-append" in done.stderr


def test_platform_measurement_reads_the_fw_cfg_file(tmp_path: Path) -> None:
    digest = secrets.token_bytes(48)
    handed = tmp_path / "raw"
    handed.write_text(digest.hex() + "\n")
    absent = str(tmp_path / "no-device")
    assert platform_measurement(handed, snp_device=absent, tsm_root=absent) == digest
    handed.write_text(digest.hex()[:-2])
    with pytest.raises(InvalidArgumentError, match="need 48 bytes, got 47"):
        platform_measurement(handed, snp_device=absent, tsm_root=absent)
    handed.write_text(digest.hex() * 1000)  # a large file is refused, not read whole
    with pytest.raises(InvalidArgumentError, match="need 48 bytes, got 96"):
        platform_measurement(handed, snp_device=absent, tsm_root=absent)
    with pytest.raises(InvalidArgumentError, match="launch QEMU with -fw_cfg name=opt/guestagent"):
        platform_measurement(tmp_path / "missing", snp_device=absent, tsm_root=absent)


def test_platform_measurement_is_refused_where_sev_snp_exists(tmp_path: Path) -> None:
    handed = tmp_path / "raw"
    handed.write_text("ab" * 48)
    device = tmp_path / "sev-guest"
    device.touch()  # as /dev/sev-guest: the secure processor measures, not the host's fw_cfg
    with pytest.raises(InvalidArgumentError, match="refused: this machine has a real SEV-SNP"):
        platform_measurement(handed, snp_device=str(device), tsm_root=str(tmp_path / "none"))
