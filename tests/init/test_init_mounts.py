"""Early mounts: what is mounted, in which order, and which failures are tolerated."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from guestagent.init.mounts import EARLY_MOUNTS, MountSpec, mount_early


def test_early_mounts_cover_what_the_agent_needs_in_a_safe_order() -> None:
    targets = [spec.target for spec in EARLY_MOUNTS]
    for target in ("/proc", "/sys", "/dev", "/run", "/sys/fs/cgroup"):
        assert target in targets
    assert targets.index("/dev") < targets.index("/dev/pts")
    assert targets.index("/sys") < targets.index("/sys/fs/cgroup")
    cgroup = next(spec for spec in EARLY_MOUNTS if spec.target == "/sys/fs/cgroup")
    assert cgroup.fstype == "cgroup2"


def test_mounts_only_what_is_missing(tmp_path: Path) -> None:
    specs = (
        MountSpec("proc", str(tmp_path / "a")),
        MountSpec("tmpfs", str(tmp_path / "b"), 6, "mode=0755"),
    )
    calls = []
    done = mount_early(
        specs,
        mounter=lambda *args: calls.append(args),
        is_mounted=lambda target: target.endswith("/a"),
    )
    assert done == [str(tmp_path / "b")]
    assert calls == [("tmpfs", str(tmp_path / "b"), "tmpfs", 6, "mode=0755")]
    assert (tmp_path / "b").is_dir()


def test_ebusy_is_tolerated_other_errors_are_not(tmp_path: Path) -> None:
    spec = (MountSpec("tmpfs", str(tmp_path / "t")),)

    def busy(*_: object) -> None:
        raise OSError(errno.EBUSY, "busy")

    def denied(*_: object) -> None:
        raise OSError(errno.EPERM, "denied")

    logged: list[str] = []
    assert mount_early(spec, mounter=busy, is_mounted=lambda _: False, log=logged.append) == []
    assert logged == [f"{tmp_path / 't'} already mounted"]
    with pytest.raises(OSError):
        mount_early(spec, mounter=denied, is_mounted=lambda _: False)
