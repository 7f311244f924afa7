"""The `guestagent` command line: one module per command group, found by discovery.

Each module in this package that defines `register(subparsers)` adds its commands; each
command sets `func(args) -> int` as its handler.

One convention for every command (docs/cli.md):
- errors are one line on stderr, `guestagent COMMAND: MESSAGE`; never a traceback;
- exit codes: 0 success; 1 the operation failed or was denied (the message says why);
  2 bad usage or unreadable input; 130 interrupted; 141 stdout closed early (`| head`),
  which is otherwise quiet. GUESTAGENT_DEBUG=1 shows the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from guestagent import __version__, startgc
from guestagent.errors import AgentError
from guestagent.printable import printable

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "error", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141


def error(command: str, message: str) -> None:
    """The one error line: `guestagent COMMAND: MESSAGE`, control characters escaped."""
    print(f"guestagent {command}: {printable(str(message))}", file=sys.stderr, flush=True)


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
    names = [command] if _is_command_module(command) else _command_modules()
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def _is_command_module(command: str | None) -> bool:
    """Whether a module of this package is named `command`: looked up as one file, so the
    fast path does not list the package (pkgutil's listing imports inspect)."""
    return bool(
        command
        and command.isidentifier()
        and not command.startswith("_")
        and any(os.path.isfile(os.path.join(d, f"{command}.py")) for d in __path__)
    )


def _command_modules() -> list[str]:
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command = args.command
    if command != "serve":
        startgc.resume()  # held by __main__; only `serve` keeps it held, until it is ready
    try:
        code = int(func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing, and keep the interpreter's final
        # flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    except AgentError as exc:
        error(command, f"{exc.code.value}: {exc.message}")
        return EXIT_FAILED
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        error(command, f"{exc.strerror or exc}{where}")
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line, still no traceback for the user
        if os.environ.get("GUESTAGENT_DEBUG"):
            raise
        error(command, f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
