"""verified-loop without a window: the host's file is copied into a sealed memfd, checked there,
and the loop is attached to that same memfd. Rewriting the host's file afterwards changes
nothing the mount reads; symlinks, block devices, FIFOs and files outside the layer dirs are
refused before a byte is read."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from storage_helpers import directory, reg, require, write_tar

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.storage.layer import build_layer
from guestagent.storage.owned_image import take_image
from guestagent.storage.registry import StorageRegistry

pytestmark = pytest.mark.root

GOOD = b"verified content, the only thing a reader may ever see\n"


@pytest.fixture
def layer_dir(tmp_path: Path) -> Path:
    require("mkfs.erofs")
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("needs root and loop devices")
    return tmp_path


def _image(where: Path) -> Path:
    # Big enough for a hash tree: the root covers data blocks through level 0.
    filler = reg("etc/filler", os.urandom(256 << 10))
    tar = write_tar(where / "l.tar", [directory("etc/"), reg("etc/motd", GOOD), filler])
    return Path(build_layer(str(tar), str(where / "l.img")).path)


def test_rewrite_after_mount_reads_only_verified_data(layer_dir: Path) -> None:
    image = _image(layer_dir)
    registry = StorageRegistry(
        str(layer_dir / "state"), mode="verified-loop", layer_dirs=[str(layer_dir)]
    )
    layer = registry.open_layer("base", str(image))
    try:
        record = registry.mount_layer("base", layer)
    finally:
        layer.close()
    try:
        assert record.mode == "verified-loop" and registry.describe()["mode"] == "verified-loop"
        # The hostile host now rewrites the data block that holds the file, and drops caches.
        raw = image.read_bytes()
        at = raw.index(GOOD)
        with open(image, "r+b") as fh:
            fh.seek(at)
            fh.write(b"EVIL" * (len(GOOD) // 4) + b"\n" * (len(GOOD) % 4))
            fh.flush()
            os.fsync(fh.fileno())
        assert GOOD not in image.read_bytes()
        Path("/proc/sys/vm/drop_caches").write_text("1")
        assert (Path(record.target) / "etc" / "motd").read_bytes() == GOOD
    finally:
        assert registry.teardown_all() == []
    # The tampered file itself keeps its root but fails verification on the next mount.
    again = registry.open_layer("again", str(image))
    try:
        with pytest.raises(IntegrityError):
            registry.mount_layer("again", again)
    finally:
        again.close()
    assert registry.teardown_all() == []


def test_sources_other_than_regular_files_under_layer_dirs_are_refused(
    layer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    image = _image(layer_dir)
    link = layer_dir / "link.img"
    link.symlink_to(image)
    with pytest.raises(InvalidArgumentError, match="symlink"):
        take_image(str(link), [str(layer_dir)])
    with pytest.raises(InvalidArgumentError, match="block device"):
        take_image("/dev/loop0", ["/dev"])
    fifo = layer_dir / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        take_image(str(fifo), [str(layer_dir)])  # and it does not hang waiting for a writer
    outside = tmp_path_factory.mktemp("outside")
    with pytest.raises(InvalidArgumentError, match="must be a file under"):
        take_image(str(image), [str(outside)])
    # A symlinked directory leading out of the layer dir: checked on the opened fd.
    (outside / "via").symlink_to(layer_dir)
    with pytest.raises(InvalidArgumentError, match="must be a file under"):
        take_image(str(outside / "via" / "l.img"), [str(outside)])


def test_the_copy_is_sealed(layer_dir: Path) -> None:
    image = _image(layer_dir)
    with take_image(str(image), [str(layer_dir)]) as owned:
        assert Path(owned.path).read_bytes() == image.read_bytes()
        for attempt in (
            lambda: os.pwrite(owned.fd, b"x", 0),
            lambda: os.ftruncate(owned.fd, 0),
            lambda: os.ftruncate(owned.fd, owned.size + 4096),
        ):
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno == errno.EPERM
