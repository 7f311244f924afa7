"""Which disk may become scratch: only a whole, unused disk the agent's configuration names,
never the root disk, a loop or dm device, or something that is not a block device. (Building
dm-integrity + dm-crypt on an accepted disk is tested in the booted guest: tests/vm.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestagent.errors import InvalidArgumentError, InvalidStateError, NotFoundError
from guestagent.storage import loop
from guestagent.storage.dm import integrity_table
from guestagent.storage.scratch import check_scratch_device, root_disks

pytestmark = pytest.mark.root


def _root_disk_node() -> str:
    """The /dev node of the disk "/" lives on (found by number, not by a guessed name)."""
    root = os.stat("/").st_dev
    for name in sorted(os.listdir("/dev")):
        path = f"/dev/{name}"
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o060000 and st.st_rdev == root:
            return path
    pytest.skip("the root filesystem is not on a block device here")


def test_nothing_configured_means_no_disk_at_all() -> None:
    with pytest.raises(InvalidStateError, match="no scratch disk is configured"):
        check_scratch_device("/dev/whatever", [])


def test_the_root_disk_is_refused_even_when_named() -> None:
    disk = _root_disk_node()
    assert os.stat(disk).st_rdev in root_disks()
    with pytest.raises(InvalidArgumentError, match="holds the root filesystem"):
        check_scratch_device(disk, [disk])


def test_unnamed_missing_and_non_block_devices_are_refused(tmp_path: Path) -> None:
    disk = _root_disk_node()
    with pytest.raises(InvalidArgumentError, match="configuration names"):
        check_scratch_device(disk, ["/dev/null-disk-that-is-not-there"])
    with pytest.raises(NotFoundError):
        check_scratch_device(str(tmp_path / "nope"), [disk])
    with pytest.raises(InvalidArgumentError, match="not a block device"):
        check_scratch_device("/dev/null", ["/dev/null"])


def test_a_loop_device_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs root and loop devices")
    backing = tmp_path / "disk"
    backing.write_bytes(bytes(8 << 20))
    device = loop.attach(str(backing), read_only=False)
    try:
        with pytest.raises(InvalidArgumentError, match="a loop device"):
            check_scratch_device(device.path, [device.path])
    finally:
        loop.detach(device)


def test_integrity_table_keys_every_sector() -> None:
    key = bytes(range(32))
    target = integrity_table("254:16", 1000, key)
    assert target.target_type == "integrity" and target.length == 1000
    assert target.params == (
        f"254:16 0 32 D 2 internal_hash:hmac(sha256):{key.hex()} block_size:4096"
    )
    with pytest.raises(InvalidArgumentError):
        integrity_table("254:16", 1000, b"short")
