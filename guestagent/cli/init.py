"""`guestagent init -- AGENT...`: bring the guest up, supervise the agent (guestagent.init)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from guestagent.init.main import run

    return run(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    from guestagent.init.main import add_arguments

    parser = subparsers.add_parser(
        "init",
        help="guest bring-up and agent supervision (PID 1 or guestagent.service)",
        description="Mount pseudo file systems, load modules, seed entropy, set the hostname, "
        "then supervise the agent; power the VM off when it ends (fail closed).",
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)
