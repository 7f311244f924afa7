"""`guestagent ctl`: send one operation to an agent and print the result.

Arguments: `key=value` takes the type the operation's schema gives the key (a number for
`signal=15`, UTF-8 bytes for `data=hello`, a string otherwise); `key:=JSON` any JSON value,
`key:=@FILE` JSON read from FILE; `key@=FILE` bytes read from FILE; `--args` a whole JSON map.
Results print as JSON with bytes decoded: text when they are printable UTF-8, else
`{"base64": ...}`; `--raw` writes a result's one bytes value as it is (container output).
`guestagent ctl ops` lists the operations and their arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error
from guestagent.client import AgentConnectionError, Client, RemoteError
from guestagent.client.display import decoded
from guestagent.errors import AgentError

__all__ = ["ArgumentError", "parse_assignments", "register"]

CONNECT_ENV = "GUESTAGENT_CONNECT"
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ctl",
        help="drive an agent: guestagent ctl [--connect URI] OP [key=value ...]",
        description="Send OP with arguments. key=value sets a value of the type the operation "
        "takes (string, number, boolean, or UTF-8 bytes); key:=JSON sets any JSON value and "
        "key:=@FILE JSON read from FILE; key@=FILE sets bytes read from FILE; --args takes a "
        "whole JSON map. `guestagent ctl ops` lists every operation and its arguments.",
    )
    parser.add_argument(
        "--connect", metavar="URI", help=f"the agent's URI (default: ${CONNECT_ENV})"
    )
    parser.add_argument("--args", dest="args_json", metavar="JSON", help="arguments as a map")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--raw", action="store_true", help="write the result's bytes value as is (no JSON)"
    )
    parser.add_argument("op", help="the operation, or `ops` to list them")
    parser.add_argument("assignments", nargs="*", metavar="key=value")
    parser.set_defaults(func=run)


class ArgumentError(ValueError):
    pass


def _schemas() -> dict[str, Any]:
    from guestagent.server.ops import all_operations  # the agent's own schemas

    return {op.name: op for op in all_operations()}


def _typed(key: str, value: str, field: Any) -> Any:
    """`value` as the type the schema gives `key` (None: no schema, keep the string)."""
    types = field.types if field is not None else (str,)
    if type(None) in types and value == "null":
        return None
    if str in types:
        return value
    if bytes in types:
        return value.encode()
    if bool in types and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    if key == "signal" and int in types and not value.isdigit():  # signal=TERM, signal=SIGTERM
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    for kind in (int, float):
        if kind in types:
            try:
                return kind(value)
            except ValueError:
                pass
    if list in types or dict in types:
        return _json(key, value)
    wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
    raise ArgumentError(f"{key}={value}: {key} takes {wanted}")


def _json(key: str, text: str) -> Any:
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ArgumentError(f"{key}:=@{text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentError(
            f"{key}:= is not JSON: {exc.msg} at column {exc.colno} (a string needs quotes, "
            f"or use {key}=...)"
        ) from None


def parse_assignments(
    assignments: list[str], args_json: str | None, schema: Any = None
) -> dict[str, Any]:
    """The operation's arguments; `schema` (field name -> Field) types key=value."""
    args: dict[str, Any] = {}
    if args_json:
        loaded = _json("--args", args_json)
        if not isinstance(loaded, dict):
            raise ArgumentError("--args must be a JSON map")
        args.update(loaded)
    for item in assignments:
        eq = item.find("=")
        if eq <= 0:
            raise ArgumentError(f"expected key=value, key:=JSON or key@=FILE, got {item!r}")
        key, value = item[:eq], item[eq + 1 :]
        if key.endswith(":"):
            args[key[:-1]] = _json(key[:-1], value)
        elif key.endswith("@"):
            try:
                with open(value, "rb") as handle:
                    args[key[:-1]] = handle.read()
            except OSError as exc:
                raise ArgumentError(f"{item}: {exc.strerror}") from None
        else:
            args[key] = _typed(key, value, (schema or {}).get(key))
    return args


def _describe_field(name: str, field: Any) -> str:
    from guestagent.protocol.schema import REQUIRED

    types = "|".join("null" if t is type(None) else t.__name__ for t in field.types)
    if field.default is REQUIRED:
        return f"{name}:{types}"
    default = field.default.decode() if isinstance(field.default, bytes) else field.default
    return f"[{name}:{types}={json.dumps(default)}]"


def list_operations() -> int:
    for name, op in sorted(_schemas().items()):
        fields = " ".join(_describe_field(k, f) for k, f in op.args.items())
        print(f"{name} {fields}".rstrip())
        if op.summary:
            print(f"    {op.summary}")
    return EXIT_OK


def _raw_bytes(result: Any) -> bytes:
    if not isinstance(result, dict):
        raise ArgumentError("--raw needs a result with exactly one bytes value")
    values = [v for v in result.values() if isinstance(v, bytes)]
    if len(values) != 1:
        raise ArgumentError("--raw needs a result with exactly one bytes value")
    return values[0]


def _is_plain(item: str) -> bool:
    """key=value (typed by the schema), not key:=JSON or key@=FILE."""
    eq = item.find("=")
    return eq > 0 and item[eq - 1] not in ":@"


def run(args: argparse.Namespace) -> int:
    if args.op == "ops":
        return list_operations()
    uri = args.connect or os.environ.get(CONNECT_ENV)
    if not uri:
        error("ctl", f"no agent address: give --connect URI or set {CONNECT_ENV}")
        return EXIT_USAGE
    try:
        op = _schemas().get(args.op) if any(map(_is_plain, args.assignments)) else None
        op_args = parse_assignments(args.assignments, args.args_json, op.args if op else None)
    except ArgumentError as exc:
        error("ctl", str(exc))
        return EXIT_USAGE
    try:
        with Client.connect(uri, timeout=args.timeout) as client:
            result = client.call(args.op, op_args)
    except RemoteError as exc:
        print(f"guestagent ctl: {args.op} failed: {exc}", file=sys.stderr)
        if exc.details:
            print(json.dumps(decoded(exc.details), indent=2), file=sys.stderr)
        return EXIT_FAILED
    except (AgentConnectionError, AgentError) as exc:
        print(f"guestagent ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.raw:
        try:
            data = _raw_bytes(result)
        except ArgumentError as exc:
            error("ctl", str(exc))
            return EXIT_USAGE
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return EXIT_OK
    print(json.dumps(decoded(result), indent=2, sort_keys=True))
    return EXIT_OK
