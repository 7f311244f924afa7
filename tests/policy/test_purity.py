"""The policy package imports nothing that does I/O (style.md §5)."""

from __future__ import annotations

import ast
from pathlib import Path

import guestagent.policy

FORBIDDEN = {
    "os",
    "socket",
    "subprocess",
    "asyncio",
    "pathlib",
    "time",
    "logging",
    "io",
    "shutil",
    "tempfile",
    "threading",
    "multiprocessing",
    "select",
    "selectors",
    "signal",
    "fcntl",
    "ctypes",
    "urllib",
    "http",
    "ssl",
    "builtins",
    "glob",
    "mmap",
    "sys",
    "random",
    "datetime",
}
PACKAGE = Path(guestagent.policy.__file__).parent
# What the policy's value classes are made with: pure as well.
RECORDS = [PACKAGE.parent / "records.py", PACKAGE.parent / "record_code.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"open", "__import__"}:
            names.add(f"<call {node.func.id}>")
    return names


def test_policy_package_imports_no_io_modules() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    files += RECORDS
    for path in files:
        for name in _imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith("<call"), f"{path.name} calls {name}"
            if name.startswith("guestagent."):
                assert name.startswith(
                    (
                        "guestagent.policy",
                        "guestagent.errors",
                        "guestagent.capabilities",
                        "guestagent.runtime_defaults",
                        "guestagent.printable",
                        "guestagent.records",
                        "guestagent.record_code",
                    )
                ), name


def test_detector_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os.path\nfrom socket import socket\nopen('x')\n")
    assert _imports(sample) == {"os.path", "socket", "<call open>"}
