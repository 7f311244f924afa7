"""The root filesystem's bytecode is what the guest runs, without recompiling at boot: every
.pyc in the packed image is hash-based and unchecked (a timestamp .pyc goes stale once the
pack fixes every mtime, and the guest would then compile each module it imports at every
boot), and each one is the compilation of the very source beside it (an unchecked .pyc is
never compared with its source by the interpreter, so a stale one would run silently)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from guest_images import GuestImages

pytestmark = [pytest.mark.vm, pytest.mark.slow]

PYTHON_DIRS = (
    "usr/lib/python3.11",
    "usr/lib/python3/dist-packages",
    "usr/local/lib/python3.11/dist-packages",
)
FLAG_HASH_BASED, FLAG_CHECK_SOURCE = 0b01, 0b10
# What init and the agent import on the way to the handshake (a sample that must be there).
BOOT_MODULES = (
    "usr/lib/python3.11/argparse.py",
    "usr/lib/python3.11/encodings/__init__.py",
    "usr/lib/python3.11/asyncio/base_events.py",
    "usr/lib/python3.11/logging/__init__.py",
    "usr/lib/python3/dist-packages/guestagent/init/main.py",
    "usr/local/lib/python3.11/dist-packages/msgpack/__init__.py",
)


def cached_pyc(source: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(source)))


@pytest.fixture(scope="module")
def root(vm_images: GuestImages, tmp_path_factory) -> Iterator[Path]:
    """The erofs part of the image (the verity tree follows it), unpacked."""
    work = tmp_path_factory.mktemp("image-bytecode")
    data = work / "data.img"
    blocks = int(vm_images.root_env["ROOT_BLOCKS"])
    with open(vm_images.rootfs, "rb") as image, open(data, "wb") as out:
        out.write(image.read(blocks * 4096))
    tree = work / "root"
    subprocess.run(["fsck.erofs", f"--extract={tree}", str(data)], check=True, capture_output=True)
    data.unlink()
    yield tree
    shutil.rmtree(tree, ignore_errors=True)


def test_every_pyc_is_unchecked_hash_and_matches_its_source(root: Path) -> None:
    checked = 0
    for directory in PYTHON_DIRS:
        for pyc in (root / directory).rglob("*.pyc"):
            header = pyc.read_bytes()[:16]
            assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
            flags = int.from_bytes(header[4:8], "little")
            assert flags == FLAG_HASH_BASED, f"{pyc}: flags {flags:#x}, not unchecked-hash"
            name = pyc.name.split(".", 1)[0]
            source = pyc.parent.parent / f"{name}.py"
            if source.exists():  # a .pyc without its source is not ours to judge here
                expected = importlib.util.source_hash(source.read_bytes())
                assert header[8:16] == expected, f"{pyc} is not {source} compiled"
                checked += 1
    assert checked > 1000, checked  # the standard library, Debian's and PyPI's packages, ours


def test_the_modules_the_boot_imports_have_bytecode(root: Path) -> None:
    for relative in BOOT_MODULES:
        assert cached_pyc(root / relative).exists(), relative
