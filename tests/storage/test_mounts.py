"""Real loop devices, erofs layers and overlayfs on this machine; nothing may leak."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_helpers import directory, reg, require, write_tar

from guestagent.errors import AgentError, IntegrityError, InvalidArgumentError
from guestagent.storage import loop
from guestagent.storage.layer import build_layer
from guestagent.storage.mounts import (
    StorageStack,
    mount_layer_verified,
    mount_overlay,
    mount_scratch_tmpfs,
    overlay_options,
)
from guestagent.storage.owned_image import take_image
from guestagent.storage.verity_device import root_from_device

pytestmark = pytest.mark.root


def _mounted_under(prefix: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(str(prefix))]


def memfd_prefix(workspace: Path) -> str:
    """What /sys shows as the backing file of a loop over this test's sealed copies."""
    return f"/memfd:{memfd_name(workspace)}"


def memfd_name(workspace: Path) -> str:
    return f"ga-test-{os.getpid()}-{workspace.name}"


def own(image: str, workspace: Path):
    return take_image(image, [str(workspace)], memfd_name(workspace))


def _loops_backed_by(prefix: Path | str) -> list[int]:
    found = []
    for name in os.listdir("/sys/block"):
        if name.startswith("loop"):
            backing = loop.backing_file(int(name[4:]))
            if backing and backing.startswith(str(prefix)):
                found.append(int(name[4:]))
    return found


@pytest.fixture
def workspace(tmp_path):
    require("mkfs.erofs")
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs root and loop devices")
    yield tmp_path
    assert _mounted_under(tmp_path) == [], "mounts leaked"
    assert _loops_backed_by(tmp_path) == [], "loop devices leaked"
    assert _loops_backed_by(memfd_prefix(tmp_path)) == [], "loop devices leaked"


def _layers(tmp_path: Path) -> list[str]:
    base = write_tar(
        tmp_path / "base.tar",
        [
            directory("etc/"),
            reg("etc/shared", b"from base"),
            reg("etc/deleted", b"base only"),
            reg("etc/kept", b"kept from base"),
            directory("opt/"),
            reg("opt/old", b"old"),
        ],
    )
    top = write_tar(
        tmp_path / "top.tar",
        [
            reg("etc/shared", b"from top"),
            reg("etc/.wh.deleted", b""),
            reg("opt/.wh..wh..opq", b""),
            reg("opt/new", b"new"),
        ],
    )
    return [build_layer(str(t), str(t.with_suffix(".img"))).path for t in (base, top)]


def test_overlay_order_whiteouts_and_teardown(workspace):
    images = _layers(workspace)
    stack = StorageStack()
    targets = []
    for number, image in enumerate(images):
        target = str(workspace / "layers" / str(number))
        with own(image, workspace) as owned:
            mount_layer_verified(owned, target, root_from_device(owned.path), stack)
        targets.append(target)
    scratch = mount_scratch_tmpfs(str(workspace / "scratch"), stack)
    rootfs = Path(mount_overlay(targets, scratch, str(workspace / "rootfs"), stack))
    assert (rootfs / "etc" / "shared").read_text() == "from top"  # top shadows base
    assert (rootfs / "etc" / "kept").read_text() == "kept from base"
    assert not (rootfs / "etc" / "deleted").exists()  # whiteout hides the lower file
    assert sorted(os.listdir(rootfs / "opt")) == ["new"]  # opaque dir hides lower contents
    (rootfs / "etc" / "written").write_text("upper")  # writes land on the scratch
    assert (Path(scratch) / "upper" / "etc" / "written").read_text() == "upper"
    with pytest.raises(OSError):
        (Path(targets[0]) / "etc" / "x").write_text("layers are read-only")
    assert (
        len(_mounted_under(workspace)) == 4 and len(_loops_backed_by(memfd_prefix(workspace))) == 2
    )
    stack.teardown()  # the fixture asserts nothing is left


def test_failure_midway_unwinds_everything(workspace):
    images = _layers(workspace)
    with pytest.raises(AgentError), StorageStack() as stack:
        owned = stack_image(images[0], workspace, stack)
        mount_layer_verified(owned, str(workspace / "l0"), root_from_device(owned.path), stack)
        mount_scratch_tmpfs(str(workspace / "scratch"), stack)
        # a file where the overlay target must be a directory: the mount fails
        (workspace / "notadir").write_text("")
        mount_overlay([str(workspace / "l0")], str(workspace / "scratch"),
                      str(workspace / "notadir" / "rootfs"), stack)  # fmt: skip


def test_tampered_layer_is_not_mounted(workspace):
    images = _layers(workspace)
    info = root_from_device(images[0])
    with open(images[0], "r+b") as fh:
        fh.seek(0)
        data = fh.read(4096)
        fh.seek(0)
        fh.write(bytes([data[0] ^ 1]) + data[1:])
    stack = StorageStack()
    with pytest.raises(IntegrityError, match="data block 0"), own(images[0], workspace) as owned:
        mount_layer_verified(owned, str(workspace / "l0"), info, stack)
    stack.teardown()


def stack_image(path: str, workspace: Path, stack: StorageStack):
    owned = own(path, workspace)
    stack.push(owned.close)
    return owned


def test_overlay_options_put_top_layer_first():
    options = overlay_options(["/l/base", "/l/mid", "/l/top"], "/s/upper", "/s/work")
    assert options == "lowerdir=/l/top:/l/mid:/l/base,upperdir=/s/upper,workdir=/s/work"
    for bad in (["/l/a:b"], ["relative"], ["/l/a,upperdir=/x"], []):
        with pytest.raises(InvalidArgumentError):
            overlay_options(bad, "/s/upper", "/s/work")


def test_loop_attach_is_read_only_and_detaches(workspace):
    image = workspace / "img"
    image.write_bytes(b"\0" * (1 << 20))
    device = loop.attach(str(image), read_only=True, sizelimit=512 << 10)
    try:
        assert loop.backing_file(device.number) == str(image)
        with open(f"/sys/block/loop{device.number}/ro") as fh:
            assert fh.read().strip() == "1"
        with open(f"/sys/block/loop{device.number}/size") as fh:
            assert int(fh.read()) == 1024  # sectors: the size limit applies
    finally:
        loop.detach(device)
    assert loop.backing_file(device.number) is None
