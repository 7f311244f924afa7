"""The `guestagent` command line: one module per command group, found by discovery.

Each module in this package that defines `register(subparsers)` adds its commands; each
command sets `func(args) -> int` as its handler. Exit codes: 0 success, 1 the operation
failed or was denied (the message says why), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from guestagent import __version__

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command` when a module of that name exists
    (each module registers the command it is named after): `serve` and `init` start without
    importing the host-side tooling."""
    parser = argparse.ArgumentParser(
        prog="guestagent",
        description="COCOAEXPO guest agent and host-side tooling for confidential containers.",
    )
    parser.add_argument("--version", action="version", version=f"guestagent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    if command in names:
        names = [command]
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
