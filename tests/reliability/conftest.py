"""Fixtures of the reliability suites: the world is built once per session."""

from __future__ import annotations

import os
import shutil

import pytest

from guestagent.errors import AgentError
from tests.reliability.world import ReliabilityWorld, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> ReliabilityWorld:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices, mounts and runc")
    for binary in ("runc", "mkfs.erofs"):
        if shutil.which(binary) is None:
            pytest.skip(f"needs {binary} (.ci/run installs it)")
    try:
        return build_world(tmp_path_factory.mktemp("reliability"))
    except AgentError as exc:
        pytest.skip(exc.message)
