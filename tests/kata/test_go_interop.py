"""Interop: the Go client built on containerd's own ttrpc library drives the pod lifecycle
against the agent over a unix socket (tests/kata/go_client.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.kata.conftest import World
from tests.kata.go_client import GoToolchainMissing, build_kataclient, check, script
from tests.kata.kata_agent import KataAgent

pytestmark = [pytest.mark.root, pytest.mark.runtime, pytest.mark.slow]


@pytest.fixture(scope="module")
def kataclient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_kataclient(tmp_path_factory.mktemp("go"))
    except GoToolchainMissing as exc:
        pytest.fail(str(exc))


def test_go_ttrpc_client_drives_the_pod(
    kataclient: Path, world: World, pod_agent: KataAgent
) -> None:
    run = subprocess.run(
        [str(kataclient), pod_agent.kata_path],
        input=json.dumps(script(str(world.layer), world.policy)).encode(),
        capture_output=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr.decode() + pod_agent.process.stderr_text()[-3000:]
    check(json.loads(run.stdout), host_tier=True)
