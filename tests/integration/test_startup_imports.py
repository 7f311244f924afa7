"""Start-up imports only what serving needs: an agent started to ready (listening, policy
adopted) has not loaded cryptography, the console, the attestation server, certificate
handling, psutil, pyroute2, dataclasses or the host-side tooling; without a policy, not the
policy engine either. Checked in a fresh interpreter, so nothing this test run imported
earlier can hide a regression."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guestagent import cli
from guestagent.policy.measure import measure

REPO = Path(__file__).resolve().parents[2]

# Started to ready, then its sys.modules printed. The agent's own serve path (the command
# line parser of `serve` alone, config_from_args, Agent.start) is what runs.
STARTER = """
import asyncio, json, sys
from guestagent.cli import build_parser
from guestagent.cli.serve import config_from_args
from guestagent.server.agent import Agent

async def start(argv):
    agent = Agent(config_from_args(build_parser("serve").parse_args(argv)))
    try:
        await agent.start()
        assert agent.listeners, "not listening"
        state = agent.gate.describe()["state"]
        print(json.dumps({"policy": state, "modules": sorted(sys.modules)}))
    finally:
        await agent.shutdown()
        await agent.release()

asyncio.run(start(sys.argv[1:]))
"""

# Loaded on first use, never before ready.
NOT_AT_START = (
    "psutil",
    "pyroute2",
    "cryptography.x509",
    "guestagent.console",
    "guestagent.attestation.server",
    "guestagent.attestation.keys",
    "guestagent.snp.verify",
    "guestagent.snp.chain",
    "guestagent.snp.simca",
    "guestagent.snp.amdcerts",
    "guestagent.policy.summary",
    "guestagent.client",
    "guestagent.demo",
    "guestagent.kata",
    "google.protobuf",
    # The package's value classes are records (guestagent/records.py): a dataclass costs
    # about 1 ms to define on 3.11, dozens of them seconds in the emulated guest. (`inspect`
    # is not listed: asyncio imports it.)
    "dataclasses",
    *(f"guestagent.cli.{name}" for name in ("console", "ctl", "demo", "image", "layer")),
    *(f"guestagent.cli.{name}" for name in ("policy", "policygen", "report", "verity")),
)


def started_modules(tmp_path: Path, *argv: str) -> dict:
    socket = tmp_path / "agent.sock"
    base = ["serve", "--listen", f"unix://{socket}", "--state-dir", str(tmp_path / "state")]
    result = subprocess.run(
        [sys.executable, "-c", STARTER, *base, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def loaded_heavy(modules: list[str], heavy: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)]


# Before a policy arrives (in the guest it comes after the handshake): no engine either.
NOT_BEFORE_A_POLICY = (
    "cryptography",
    "re2",
    "guestagent.policy.engine",
    "guestagent.policy.document",
    "guestagent.policy.measure",
    "guestagent.snp.report",
)


def test_a_hardware_backed_start_loads_no_cryptography_and_no_policy_engine(
    tmp_path: Path,
) -> None:
    # --snp none takes the path a sev-guest agent takes before its first request: no
    # simulator, so not even cryptography's core is needed.
    started = started_modules(tmp_path, "--snp", "none")
    assert loaded_heavy(started["modules"], (*NOT_AT_START, *NOT_BEFORE_A_POLICY)) == []
    assert "guestagent.transport.listen" in started["modules"]  # it did start serving


def test_a_simulated_start_awaiting_its_policy_loads_what_a_hardware_one_does(
    tmp_path: Path,
) -> None:
    # The guest's path in the VM tier: simulated SNP, the policy comes after the handshake.
    sim = tmp_path / "sim"
    sim.mkdir(mode=0o700)
    started = started_modules(
        tmp_path, "--snp", "sim", "--sim-state", str(sim), "--sim-host-data", "00" * 32
    )
    assert started["policy"] == "none"  # none delivered yet: everything is denied
    assert loaded_heavy(started["modules"], (*NOT_AT_START, *NOT_BEFORE_A_POLICY)) == []


def test_a_simulated_start_with_a_policy_signs_in_a_child_without_cryptography(
    tmp_path: Path,
) -> None:
    # The simulator's report for adoption is signed by a short-lived child (snp/simsign.py):
    # the agent itself loads neither cryptography nor certificate code, as on hardware. RE2
    # loads at the first pattern rule: this policy has none.
    policy = tmp_path / "policy.json"
    policy.write_bytes(json.dumps({"version": 1, "containers": []}).encode())
    sim = tmp_path / "sim"
    sim.mkdir(mode=0o700)
    started = started_modules(
        tmp_path,
        "--snp", "sim", "--sim-state", str(sim), "--policy", str(policy),
        "--sim-host-data", measure(policy.read_bytes()).host_data_hex,
    )  # fmt: skip
    assert started["policy"] == "enforcing"
    assert loaded_heavy(started["modules"], (*NOT_AT_START, "cryptography", "re2")) == []


def commands(parser) -> set[str]:
    return set(parser._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", sorted(commands(cli.build_parser())))
def test_each_command_is_registered_by_the_module_named_after_it(command: str) -> None:
    # main() imports only the module named by argv[0]: a command registered elsewhere would
    # vanish from the fast path.
    assert commands(cli.build_parser(command)) == {command}
