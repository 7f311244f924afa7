"""`guestagent serve`: run the agent daemon."""

from __future__ import annotations

import argparse
import asyncio

from guestagent.cli import EXIT_OK, EXIT_USAGE
from guestagent.errors import AgentError
from guestagent.protocol.framing import DEFAULT_MAX_FRAME
from guestagent.server.agent import Agent, AgentConfig
from guestagent.server.logs import configure_logging
from guestagent.transport.uri import parse_uri

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the agent daemon")
    parser.add_argument(
        "--listen",
        action="append",
        metavar="URI",
        help="transport to serve on (repeatable): vsock://any:1024 (default), "
        "serial:///dev/vport0p1, serial://agent.0, unix:///run/guestagent.sock",
    )
    parser.add_argument(
        "--max-frame",
        type=int,
        default=DEFAULT_MAX_FRAME,
        metavar="BYTES",
        help=f"largest accepted frame (default {DEFAULT_MAX_FRAME})",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=128,
        metavar="N",
        help="requests in flight per connection before reading pauses",
    )
    parser.add_argument("--state-dir", default="/run/guestagent", metavar="DIR")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--insecure-allow-all",
        action="store_true",
        help="DEVELOPMENT ONLY: allow every request without a policy",
    )
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    listen = args.listen or ["vsock://any:1024"]
    for uri in listen:
        parse_uri(uri)  # fail on a bad URI before anything starts
    if args.max_frame < 1024:
        raise AgentError(f"--max-frame must be at least 1024 bytes, got {args.max_frame}")
    return AgentConfig(
        listen=listen,
        max_frame=args.max_frame,
        max_in_flight=max(1, args.max_in_flight),
        insecure_allow_all=args.insecure_allow_all,
        state_dir=args.state_dir,
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
    except AgentError as exc:
        print(f"guestagent serve: {exc.message}", flush=True)
        return EXIT_USAGE

    async def main() -> None:
        await Agent(config).serve()

    asyncio.run(main())
    return EXIT_OK
