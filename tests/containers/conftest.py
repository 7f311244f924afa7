"""Fixtures for real-runtime container tests (helpers live in manager_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from container_rootfs import build_busybox_rootfs, bundle_for, host_spec

from guestagent.containers.manager import ContainerManager


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def bundle_config(busybox_rootfs: Path) -> Callable[..., dict[str, Any]]:
    """config.json for `args` in the busybox rootfs, as the agent would write it."""

    def make(manager: ContainerManager, container_id: str, args: list[str], **process: Any):
        spec = host_spec(args, **process)
        cgroups_path = manager.cgroups_path(container_id)
        return bundle_for(spec, str(busybox_rootfs), cgroups_path, container_id=container_id)

    return make
