"""`guestagent ctl`: send one operation to an agent and print the result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from guestagent.client import AgentConnectionError, Client, RemoteError
from guestagent.client.display import to_json
from guestagent.errors import AgentError

__all__ = ["parse_assignments", "register", "to_json"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ctl",
        help="drive an agent: guestagent ctl --connect URI OP [key=value ...]",
        description="Send OP with arguments. key=value sets a string; key:=JSON sets any JSON "
        "value; key@=FILE sets bytes read from FILE; --args takes a whole JSON map.",
    )
    parser.add_argument("--connect", required=True, metavar="URI")
    parser.add_argument("--args", dest="args_json", metavar="JSON", help="arguments as a map")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("op")
    parser.add_argument("assignments", nargs="*", metavar="key=value")
    parser.set_defaults(func=run)


def parse_assignments(assignments: list[str], args_json: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if args_json:
        loaded = json.loads(args_json)
        if not isinstance(loaded, dict):
            raise ValueError("--args must be a JSON map")
        args.update(loaded)
    for item in assignments:
        if ":=" in item:
            key, _, value = item.partition(":=")
            args[key] = json.loads(value)
        elif "@=" in item:
            key, _, path = item.partition("@=")
            with open(path, "rb") as handle:
                args[key] = handle.read()
        elif "=" in item:
            key, _, value = item.partition("=")
            args[key] = value
        else:
            raise ValueError(f"expected key=value, key:=JSON or key@=FILE, got {item!r}")
    return args


def run(args: argparse.Namespace) -> int:
    try:
        op_args = parse_assignments(args.assignments, args.args_json)
    except (ValueError, OSError) as exc:
        print(f"guestagent ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Client.connect(args.connect, timeout=args.timeout) as client:
            result = client.call(args.op, op_args)
    except RemoteError as exc:
        print(f"guestagent ctl: {args.op} failed: {exc}", file=sys.stderr)
        if exc.details:
            print(json.dumps(to_json(exc.details), indent=2), file=sys.stderr)
        return EXIT_FAILED
    except (AgentConnectionError, AgentError) as exc:
        print(f"guestagent ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(to_json(result), indent=2, sort_keys=True))
    return EXIT_OK
