"""The pod world the Kata tests share: a verified busybox layer, the pod policy, an agent
with simulated SNP whose HOST_DATA is that policy's digest."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guestagent.demo import assets
from guestagent.errors import AgentError
from guestagent.policy.measure import measure
from guestagent.storage.layer import build_layer
from tests.kata import pod
from tests.kata.kata_agent import KataAgent, kata_agent


@dataclass
class World:
    layer: Path
    policy: bytes
    base: Path
    other_layer: Path  # a verified layer the policy does not list


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices, mounts and runc")
    if shutil.which("runc") is None or shutil.which("mkfs.erofs") is None:
        pytest.skip("needs runc and mkfs.erofs (.ci/run installs them)")
    base = tmp_path_factory.mktemp("kata")
    try:
        image = assets.build_busybox_layer(base)
    except AgentError as exc:
        pytest.skip(exc.message)
    (base / "sim").mkdir(mode=0o700)
    other_root = assets.build_busybox_rootfs(base / "other-rootfs")
    (other_root / "etc" / "motd").write_text("not the audited image\n")
    other = build_layer(str(other_root), str(base / "other.layer"), work_dir=str(base))
    policy = pod.pod_policy(image.root_hash, str(base / "state"))
    return World(Path(image.path), policy, base, Path(other.path))


@pytest.fixture
def pod_agent(world: World) -> Iterator[KataAgent]:
    args = (
        "--snp", "sim", "--sim-state", str(world.base / "sim"),
        "--sim-host-data", measure(world.policy).host_data_hex,
        "--layer-dir", str(world.base),
        "--state-dir", str(world.base / "state"),  # the one the policy names (last one wins)
    )  # fmt: skip
    with kata_agent(*args) as running:
        yield running
