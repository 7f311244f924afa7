"""`guestagent console`: the read-only debug console client.

    guestagent console --connect unix:///run/guestagent-console.sock status
    guestagent console --connect URI --json decisions denied 20
    guestagent console --connect URI            # interactive prompt

Exit codes (one-shot): 0 ok, 1 denied or failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from guestagent.client import AgentConnectionError, Client, RemoteError
from guestagent.console.commands import COMMANDS, console_operations
from guestagent.console.shell import CommandLineError, parse_command, print_result, run_interactive
from guestagent.errors import AgentError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "console",
        help="inspect a running agent through its read-only debug console",
        description="Run one COMMAND, or start an interactive prompt when none is given. "
        f"Commands: {', '.join(COMMANDS)}. Values: positional or name=value.",
    )
    parser.add_argument("--connect", required=True, metavar="URI", help="the console's URI")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]")
    parser.set_defaults(func=run)


def describe_error(exc: BaseException) -> str | None:
    """The line to show for a failed command; None for failures that end the session."""
    if isinstance(exc, RemoteError):
        verdict = "denied" if exc.code.startswith("policy.") else "failed"
        rule = f" [rule {exc.rule}]" if exc.rule else ""
        return f"{verdict}: {exc.code}: {exc.message}{rule}"
    return None


class NotAConsole(Exception):
    pass


def _require_console(uri: str, hello: object) -> None:
    """The agent's own socket answers hello too; its replies are not console results."""
    agent = str(hello.get("agent", "")) if isinstance(hello, dict) else ""
    if "debug console" not in agent:
        raise NotAConsole(
            f"{uri} is not a debug console (it says {agent or 'nothing'!r}); "
            "give the URI of `serve --console`, or use `guestagent ctl` for the agent"
        )


def run(args: argparse.Namespace) -> int:
    try:
        one_shot = parse_command(args.words) if args.words else None
    except CommandLineError as exc:
        print(f"guestagent console: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Client.connect(args.connect, timeout=args.timeout, hello=False) as client:
            _require_console(args.connect, client.hello())
            if one_shot is not None:
                command, op_args = one_shot
                print_result(command, client.call(command, op_args), args.json, sys.stdout)
                return EXIT_OK
            summaries = {op.name: op.summary for op in console_operations()}
            return run_interactive(
                client.call, as_json=args.json, summaries=summaries, errors=describe_error
            )
    except RemoteError as exc:
        print(f"guestagent console: {describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except NotAConsole as exc:
        print(f"guestagent console: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AgentConnectionError, AgentError, OSError) as exc:
        print(f"guestagent console: {exc}", file=sys.stderr)
        return EXIT_FAILED
