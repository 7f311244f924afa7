"""No switch weakens enforcement on SEV-SNP hardware, and adoption checks its nonce.

Real hardware is stood in for by the agent's device seam (`AgentConfig.snp_device` /
`tsm_root`, which no command-line flag sets): an agent that sees an SEV-SNP interface refuses
the simulator, allow-all and verified-loop; allow-all needs `--snp none` everywhere.
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from guestagent.demo import assets
from guestagent.errors import AgentError, ErrorCode
from guestagent.policy.measure import measure
from guestagent.server.agent import Agent, AgentConfig
from guestagent.snp import uapi
from guestagent.snp.sevguest import SevGuestBackend
from guestagent.snp.sim import SimBackend, SimConfig


def _config(tmp_path: Path, **overrides: object) -> AgentConfig:
    values: dict[str, object] = {
        "listen": [f"unix://{tmp_path}/a.sock"],
        "state_dir": str(tmp_path / "state"),
        "manage_containers": False,
        "snp_device": str(tmp_path / "no-sev-guest"),
        "tsm_root": str(tmp_path / "no-tsm"),
    }
    values.update(overrides)
    return AgentConfig(**values)  # type: ignore[arg-type]


def _start(config: AgentConfig) -> AgentError:
    agent = Agent(config)

    async def main() -> None:
        try:
            await agent.start()
        finally:
            await agent.release()

    with pytest.raises(AgentError) as refused:
        asyncio.run(main())
    assert refused.value.code == ErrorCode.MODE_REFUSED
    assert not Path(config.state_dir).exists(), "refused before anything was made"
    return refused.value


@pytest.fixture
def sev_guest(tmp_path: Path) -> str:
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    return str(device)


def test_sim_is_refused_where_sev_guest_exists(tmp_path: Path, sev_guest: str) -> None:
    error = _start(
        _config(tmp_path, snp="sim", sim_state=str(tmp_path / "sim"), snp_device=sev_guest)
    )
    assert "--snp sim refused" in error.message and sev_guest in error.message


def test_sim_is_refused_where_configfs_tsm_exists(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    error = _start(_config(tmp_path, snp="sim", sim_state=str(tmp_path / "sim"), tsm_root=str(tsm)))
    assert "--snp sim refused" in error.message


def test_allow_all_needs_snp_none_and_no_hardware(tmp_path: Path, sev_guest: str) -> None:
    error = _start(
        _config(tmp_path, insecure_allow_all=True, snp="sim", sim_state=str(tmp_path / "s"))
    )
    assert "needs --snp none" in error.message
    error = _start(_config(tmp_path, insecure_allow_all=True, snp="none", snp_device=sev_guest))
    assert "--insecure-allow-all refused" in error.message


@pytest.mark.parametrize("mode", ["verified-loop", "auto"])
def test_hardware_needs_dm_verity(tmp_path: Path, sev_guest: str, mode: str) -> None:
    # This machine has no device-mapper, so `auto` resolves to verified-loop: refused too.
    error = _start(_config(tmp_path, snp="sev-guest", snp_device=sev_guest, storage_mode=mode))
    assert "storage mode verified-loop refused" in error.message


def test_cli_refuses_allow_all_with_a_backend(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "guestagent", "serve", "--listen", f"unix://{tmp_path}/s",
         "--state-dir", str(tmp_path / "state"), "--no-containers", "--snp", "sim",
         "--sim-state", str(tmp_path / "sim"), "--insecure-allow-all"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "agent.mode_refused" in result.stderr and "needs --snp none" in result.stderr


def test_adoption_refuses_a_report_without_its_nonce(tmp_path: Path, milan_sim: Path) -> None:
    """A sev-guest answer that carries some other REPORT_DATA (a replay) adopts nothing."""
    policy = assets.demo_policy(["ab" * 32])
    digest = bytes.fromhex(measure(policy).host_data_hex)
    sim = SimBackend(milan_sim, SimConfig(host_data=digest))
    stale = sim.get_report(bytes(64))  # recorded earlier, over another nonce

    def replaying_driver(fd: int, number: int, arg: uapi.SnpGuestRequestIoctl) -> int:
        assert number == uapi.SNP_GET_REPORT
        payload = struct.pack("<II", 0, len(stale)) + bytes(24) + stale
        ctypes.memmove(arg.resp_data, payload, len(payload))
        return 0

    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    agent = Agent(_config(tmp_path, snp="none"))
    agent.snp = SevGuestBackend(str(device), ioctl=replaying_driver)
    with pytest.raises(AgentError) as refused:
        agent.adopt_policy(policy, "test")
    assert refused.value.code == ErrorCode.SNP_BAD_REPORT
    assert "nonce" in refused.value.message
    assert agent.gate.describe()["state"] != "enforcing"

    # The same backend answering over the nonce it was given adopts the policy.
    def honest_driver(fd: int, number: int, arg: uapi.SnpGuestRequestIoctl) -> int:
        request = uapi.SnpReportReq.from_address(arg.req_data)
        report = sim.get_report(bytes(request.user_data))
        payload = struct.pack("<II", 0, len(report)) + bytes(24) + report
        ctypes.memmove(arg.resp_data, payload, len(payload))
        return 0

    agent.snp = SevGuestBackend(str(device), ioctl=honest_driver)
    assert agent.adopt_policy(policy, "test")["digest"] == digest.hex()


@pytest.fixture(scope="module")
def milan_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "milan"
    SimBackend(path)
    return path
