"""A real container (runc, busybox root filesystem) runs the example client against its
attestation socket; the report it prints is verified end to end as a relying party would,
and its sealing key is bound to the policy (different policy: different key) and stable
across agent restarts (same policy: same key).

The client is examples/attestation_client.py run by the system's Python, which the test
bind-mounts read-only (with its libraries under /usr) into the busybox root filesystem.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from attestation_helpers import (
    LAYER,
    adopted_policy,
    attester_entry,
    expected_key,
    launch,
    policy_bytes,
    short_dir,
    verify_as_relying_party,
)

from guestagent.attestation import AttestationHub, attestation_entry
from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.manager import ContainerManager
from guestagent.containers.reaper import Reaper
from guestagent.containers.spec import read_create
from guestagent.policy.gate import PolicyGate
from guestagent.snp.backend import GuestField

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "containers"))
from container_rootfs import build_busybox_rootfs, host_spec
from tests_markers import requires_runtime

pytestmark = requires_runtime
REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # lives entirely under /usr, which we bind-mount
ARGV = ["/usr/bin/python3", "/attest/client.py", "/attest/public.pem"]
PUBLIC_KEY = b"-----BEGIN PUBLIC KEY-----\nnot a real key, just the workload's bytes\n"


@pytest.fixture
def rootfs(tmp_path_factory) -> Path:
    """A fresh root filesystem per test, as each container gets a fresh overlay."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} is not installed (the client runs with it)")
    root = build_busybox_rootfs(tmp_path_factory.mktemp("attest") / "rootfs")
    for name in ("usr", "attest"):
        (root / name).mkdir()
    for name in ("lib", "lib64"):  # merged /usr: the dynamic loader is found through these
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), root / name)
    return root


@pytest.fixture(scope="module")
def client_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("client")
    shutil.copy(REPO_ROOT / "examples" / "attestation_client.py", directory / "client.py")
    (directory / "public.pem").write_bytes(PUBLIC_KEY)
    return directory


def _bind(source: Path | str, destination: str) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": ["rbind", "ro", "nosuid", "nodev"]}  # fmt: skip


def decide_create(gate: PolicyGate, container_id: str, spec: dict[str, Any], rootfs: str):
    """The policy's path to create_container: layer, overlay, then the container itself."""
    for point, request in (
        ("mount_device", {"target": "/run/layers/0", "device_hash": LAYER}),
        ("mount_overlay", {"container_id": container_id, "layer_paths": ["/run/layers/0"],
                           "target": rootfs}),
    ):  # fmt: skip
        decision = gate.decide(point, request)
        decision.raise_if_denied()
        gate.commit(decision)
    facts, seccomp = read_create(container_id, spec, rootfs)
    decision = gate.decide("create_container", facts)
    decision.raise_if_denied()
    gate.commit(decision)
    return facts, seccomp, decision


async def run_attester(chip: Path, policy: bytes, rootfs: Path, client_dir: Path, state: Path):
    """One agent lifetime: adopt the policy, create the container the way the agent will
    (decision -> attestation socket -> bundle), run it, and return its exit code and output."""
    backend = launch(chip, policy)
    gate = PolicyGate(adopted_policy(backend, policy).policy)
    spec = host_spec(ARGV)
    facts, seccomp, decision = decide_create(gate, "attester", spec, str(rootfs))
    reaper = Reaper()
    reaper.install()
    manager = ContainerManager(reaper, state / "containers", cgroup_parent=f"ga-att-{os.getpid()}")
    hub = AttestationHub(backend, state)
    try:
        config = build_bundle_config(
            facts, decision.data, cgroups_path=manager.cgroups_path("attester"), seccomp=seccomp
        )
        entry = attestation_entry(decision.data)
        if entry is not None:
            config["mounts"].append(await hub.open("attester", entry))
        config["mounts"] += [_bind("/usr", "/usr"), _bind(client_dir, "/attest")]
        await manager.create("attester", config)
        await manager.start("attester")
        io = manager.io("attester")
        output, errors = await io.stdout.read_all(), await io.stderr.read_all()
        code = await manager.wait("attester", timeout=60)
        return backend, entry, code, output, errors
    finally:
        assert await manager.shutdown() == []
        await hub.close_all()
        reaper.close()


def test_container_attests_and_keys_bind_the_policy(chip, rootfs, client_dir):
    policy_a, policy_b = policy_bytes(), policy_bytes(note="policy b")
    runs = []
    for policy in (policy_a, policy_a, policy_b):  # the second run is an agent restart
        state = short_dir()
        try:
            runs.append(asyncio.run(run_attester(chip, policy, rootfs, client_dir, state)))
        finally:
            shutil.rmtree(state, ignore_errors=True)
    printed = []
    for (backend, entry, code, output, errors), policy in zip(
        runs, (policy_a, policy_a, policy_b), strict=True
    ):
        assert (entry, code) == ("attester", 0), errors.decode()
        result = json.loads(output)
        host_data = adopted_policy(backend, policy).measurement.host_data
        report = verify_as_relying_party(
            result, hashlib.sha512(PUBLIC_KEY).digest(), host_data, backend.state.ark
        )
        assert report.measurement == backend.config.measurement
        assert result["simulated"] is True
        key = expected_key(
            backend, "attester", "sealing", GuestField.MEASUREMENT | GuestField.POLICY
        )
        assert result["key_sha256"] == hashlib.sha256(key).hexdigest()
        printed.append(result["key_sha256"])
    assert printed[0] == printed[1], "same policy, restarted agent: same key"
    assert printed[2] != printed[0], "another policy: another key"


def test_entry_without_the_flag_gets_no_socket(chip, rootfs, client_dir):
    policy = policy_bytes(attester_entry(attestation_socket=False))
    state = short_dir()
    try:
        _, entry, code, output, errors = asyncio.run(
            run_attester(chip, policy, rootfs, client_dir, state)
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert entry is None and code == 1 and output == b""
    assert b"FileNotFoundError" in errors  # no socket at /run/guestagent/attestation.sock
