"""Kernel modules: which files to load, in which order, from a modules.dep.

Resolution is pure (text in, ordered paths out); loading goes through an injected loader
(`finit_module` by default, so no kmod binary is needed). Modules already loaded (present in
/sys/module) or built into the kernel (modules.builtin) are skipped.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

from guestagent.errors import NotFoundError
from guestagent.init import syscalls
from guestagent.records import field, record

__all__ = [
    "ModuleIndex",
    "load_modules",
    "module_name",
    "parse_modules_builtin",
    "parse_modules_dep",
]

_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


def module_name(path_or_name: str) -> str:
    """The kernel's name for a module: basename, no suffix, dashes as underscores."""
    name = path_or_name.rsplit("/", 1)[-1]
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep lines `path: dep-path...` -> {name: (path, [dependency names])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if not sep or not path.strip():
            continue
        path = path.strip()
        table[module_name(path)] = (path, [module_name(dep) for dep in deps.split()])
    return table


def parse_modules_builtin(text: str) -> frozenset[str]:
    return frozenset(module_name(line) for line in text.split() if line)


@record
class ModuleIndex:
    """One kernel's module directory, as text already read (see `from_directory`)."""

    directory: str
    dep: dict[str, tuple[str, list[str]]]
    builtin: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_directory(cls, directory: str) -> ModuleIndex:
        with open(os.path.join(directory, "modules.dep")) as handle:
            dep = parse_modules_dep(handle.read())
        builtin: frozenset[str] = frozenset()
        builtin_path = os.path.join(directory, "modules.builtin")
        if os.path.exists(builtin_path):
            with open(builtin_path) as handle:
                builtin = parse_modules_builtin(handle.read())
        return cls(directory, dep, builtin)

    def load_order(self, names: Iterable[str], loaded: Callable[[str], bool]) -> list[str]:
        """Absolute paths to load, dependencies first, each once; unknown names raise."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in seen or name in self.builtin or loaded(name):
                return
            if name in chain:  # depmod refuses cycles; a corrupt file must not loop us
                raise NotFoundError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            if name not in self.dep:
                raise NotFoundError(f"module {name} not found in {self.directory}/modules.dep")
            path, deps = self.dep[name]
            for dep in deps:
                visit(dep, (*chain, name))
            seen.add(name)
            order.append(os.path.join(self.directory, path))

        for name in names:
            visit(module_name(name), ())
        return order


def is_loaded(name: str, sys_module: str = "/sys/module") -> bool:
    return os.path.isdir(os.path.join(sys_module, module_name(name)))


def load_modules(
    names: Iterable[str],
    index: ModuleIndex,
    *,
    loader: Callable[[str], None] = syscalls.finit_module,
    loaded: Callable[[str], bool] = is_loaded,
) -> list[str]:
    """Load `names` and their dependencies; return the paths loaded now."""
    done: list[str] = []
    for path in index.load_order(names, loaded):
        try:
            loader(path)
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # EEXIST: loaded meanwhile
                raise
        done.append(path)
    return done
