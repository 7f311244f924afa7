"""The packages form layers: no import circle between any two of guestagent's packages.

Every import counts, including those under TYPE_CHECKING and inside functions: a circle a
type checker or a lazy import hides is still a circle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import guestagent

ROOT = Path(guestagent.__file__).parent


def package_imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("guestagent."):
                    target = module.split(".")[1]
                    if target != package:
                        edges.setdefault(package, set()).add(target)
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        package = todo.pop()
        if package not in seen:
            seen.add(package)
            todo.extend(edges.get(package, ()))
    return seen


def test_no_package_imports_itself_through_others() -> None:
    edges = package_imports()
    circles = sorted(package for package in edges if package in reachable(edges, package))
    assert circles == [], f"packages on an import circle: {circles}"


def test_server_console_and_cli_are_layered() -> None:
    edges = package_imports()
    assert "server" not in reachable(edges, "console")
    assert "cli" not in reachable(edges, "console") | reachable(edges, "server")
    assert "cli" not in reachable(edges, "demo")
    # The machinery the console shares with the agent lives below both.
    assert reachable(edges, "rpc").isdisjoint({"server", "console", "cli"})


def test_the_finder_sees_imports() -> None:
    # A check that found nothing would pass vacuously.
    edges = package_imports()
    assert {"console", "rpc"} <= edges["server"]
    assert "rpc" in edges["console"]
