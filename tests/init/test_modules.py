"""Module load order from a real modules.dep excerpt; loading through an injected loader."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from guestagent.errors import NotFoundError
from guestagent.init.modules import (
    ModuleIndex,
    load_modules,
    module_name,
    parse_modules_dep,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture
def index(tmp_path: Path) -> ModuleIndex:
    for name in ("modules.dep", "modules.builtin"):
        (tmp_path / name).write_text((DATA / name).read_text())
    return ModuleIndex.from_directory(str(tmp_path))


def names(paths: list[str]) -> list[str]:
    return [module_name(path) for path in paths]


def never_loaded(_: str) -> bool:
    return False


def test_module_name_normalises_paths_suffixes_and_dashes() -> None:
    assert module_name("kernel/drivers/md/dm-verity.ko") == "dm_verity"
    assert module_name("kernel/fs/erofs/erofs.ko.xz") == "erofs"
    assert module_name("dm-mod") == "dm_mod"


def test_dependencies_come_first_and_each_module_once(index: ModuleIndex) -> None:
    order = names(index.load_order(["dm-verity", "dm-mod", "vsock_loopback"], never_loaded))
    assert order == [
        "dm_mod",
        "dm_bufio",
        "reed_solomon",
        "dm_verity",
        "vsock",
        "vmw_vsock_virtio_transport_common",
        "vsock_loopback",
    ]


def test_every_module_follows_all_its_dependencies(index: ModuleIndex) -> None:
    wanted = ["virtio_console", "dm_verity", "overlay", "erofs", "vmw_vsock_virtio_transport"]
    order = names(index.load_order(wanted, never_loaded))
    assert len(order) == len(set(order))
    for position, name in enumerate(order):
        for dep in index.dep[name][1]:
            assert order.index(dep) < position, (dep, name)
    assert set(wanted) <= set(order)


def test_paths_are_absolute_under_the_module_directory(index: ModuleIndex) -> None:
    (path,) = index.load_order(["overlay"], never_loaded)
    assert path == f"{index.directory}/kernel/fs/overlayfs/overlay.ko"


def test_loaded_and_builtin_modules_are_skipped(index: ModuleIndex) -> None:
    order = names(index.load_order(["dm_verity", "ext4"], lambda name: name == "dm_mod"))
    assert order == ["dm_bufio", "reed_solomon", "dm_verity"]


def test_unknown_module_is_an_error(index: ModuleIndex) -> None:
    with pytest.raises(NotFoundError, match="no_such_module"):
        index.load_order(["no-such-module"], never_loaded)


def test_dependency_cycle_is_an_error() -> None:
    index = ModuleIndex("/m", parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n"))
    with pytest.raises(NotFoundError, match="cycle"):
        index.load_order(["a"], never_loaded)


def test_load_modules_calls_the_loader_in_order_and_tolerates_eexist(index: ModuleIndex) -> None:
    calls: list[str] = []

    def loader(path: str) -> None:
        calls.append(path)
        if path.endswith("dm-mod.ko"):
            raise OSError(errno.EEXIST, "File exists")

    done = load_modules(["dm_verity"], index, loader=loader, loaded=never_loaded)
    assert names(calls) == ["dm_mod", "dm_bufio", "reed_solomon", "dm_verity"]
    assert done == calls


def test_load_modules_propagates_real_failures(index: ModuleIndex) -> None:
    def loader(path: str) -> None:
        raise OSError(errno.ENOEXEC, "Exec format error")

    with pytest.raises(OSError) as caught:
        load_modules(["overlay"], index, loader=loader, loaded=never_loaded)
    assert caught.value.errno == errno.ENOEXEC
