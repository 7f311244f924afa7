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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guestagent",
        description="COCOAEXPO guest agent and host-side tooling for confidential containers.",
    )
    parser.add_argument("--version", action="version", version=f"guestagent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
