"""`guestagent serve`: run the agent daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from guestagent import timeline
from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from guestagent.cli.simlaunch import add_launch_options, launch_fields
from guestagent.errors import AgentError
from guestagent.protocol.framing import DEFAULT_MAX_FRAME
from guestagent.rpc.host import DEFAULT_LIMITS
from guestagent.server.agent import Agent, AgentConfig
from guestagent.server.limits import TRANSPORTS, parse_caps
from guestagent.server.logs import configure_logging
from guestagent.transport.uri import parse_uri

if TYPE_CHECKING:
    from guestagent.snp.sim import SimConfig

__all__ = ["add_agent_arguments", "config_from_args", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the agent daemon")
    add_agent_arguments(parser)
    parser.set_defaults(func=run)


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--max-connections",
        action="append",
        default=[],
        metavar="[TRANSPORT=]N",
        help="open connections per listener (new ones evict those that never said hello); "
        f"N for every listener (default {DEFAULT_LIMITS.max_connections}), TRANSPORT=N for "
        f"those of one transport ({', '.join(TRANSPORTS)}); repeatable",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=DEFAULT_LIMITS.handshake_timeout,
        metavar="SECONDS",
        help="time a connection has to complete hello",
    )
    parser.add_argument(
        "--frame-timeout",
        type=float,
        default=DEFAULT_LIMITS.frame_timeout,
        metavar="SECONDS",
        help="time a frame may take to arrive once it has started",
    )
    parser.add_argument(
        "--buffer-budget",
        type=int,
        default=DEFAULT_LIMITS.buffer_budget,
        metavar="BYTES",
        help="bytes of large partial frames all connections may hold at once",
    )
    parser.add_argument("--state-dir", default="/run/guestagent", metavar="DIR")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--snp",
        default="auto",
        choices=["auto", "sev-guest", "configfs-tsm", "sim", "none"],
        help="SEV-SNP backend; auto refuses to start without a device; sim "
        "must be asked for; none means no policy can ever be adopted",
    )
    simulator = parser.add_argument_group("the simulated launch (only with --snp sim)")
    simulator.add_argument("--sim-state", metavar="DIR", help="simulator key directory (0700)")
    add_launch_options(simulator)
    parser.add_argument(
        "--console",
        action="append",
        default=[],
        metavar="URI",
        help="serve the read-only debug console here (e.g. vsock://any:1025)",
    )
    parser.add_argument(
        "--kata",
        action="append",
        default=[],
        metavar="URI",
        help="also speak the Kata agent protocol (ttrpc) here, e.g. vsock://any:1024 with the "
        "native protocol moved to another port; see docs/kubernetes.md",
    )
    parser.add_argument(
        "--policy", metavar="FILE", help="policy (JSON or initdata TOML) to adopt at start-up"
    )
    parser.add_argument(
        "--storage-mode", default="auto", choices=["auto", "dm-verity", "verified-loop"]
    )
    parser.add_argument(
        "--layer-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="directory whose image files may be mounted as layers",
    )
    parser.add_argument(
        "--scratch-device",
        action="append",
        default=[],
        metavar="DEV",
        help="a whole disk the host may ask to hold scratch (dm-crypt over dm-integrity)",
    )
    parser.add_argument("--runtime", metavar="PATH", help="runc or crun (default: auto-detect)")
    parser.add_argument(
        "--cgroup-parent",
        default="guestagent",
        metavar="NAME",
        help="cgroup under which containers' cgroups are made (default guestagent)",
    )
    parser.add_argument(
        "--no-containers", action="store_true", help="do not become subreaper or run containers"
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write every decision's request to FILE, as `policy check --trace` replays it "
        "(holds what the host sent, env values included)",
    )
    parser.add_argument(
        "--insecure-allow-all",
        action="store_true",
        help="DEVELOPMENT ONLY: allow every request without a policy",
    )


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    listen = args.listen or ["vsock://any:1024"]
    for uri in [*listen, *args.kata]:
        parse_uri(uri)  # fail on a bad URI before anything starts
    shared = sorted(set(listen) & set(args.kata))
    if shared:
        raise AgentError(
            f"{shared[0]} is given to both --listen and --kata: the two protocols need "
            "separate listeners (docs/kubernetes.md)"
        )
    if args.max_frame < 1024:
        raise AgentError(f"--max-frame must be at least 1024 bytes, got {args.max_frame}")
    max_connections, connection_caps = parse_caps(
        args.max_connections, DEFAULT_LIMITS.max_connections
    )
    sim_config = _sim_config(args)
    return AgentConfig(
        listen=listen,
        max_frame=args.max_frame,
        max_in_flight=max(1, args.max_in_flight),
        max_connections=max_connections,
        connection_caps=connection_caps,
        handshake_timeout=max(0.1, args.handshake_timeout),
        frame_timeout=max(0.1, args.frame_timeout),
        buffer_budget=max(0, args.buffer_budget),
        insecure_allow_all=args.insecure_allow_all,
        state_dir=args.state_dir,
        snp=args.snp,
        sim_state=args.sim_state,
        sim_config=sim_config,
        policy_file=args.policy,
        storage_mode=args.storage_mode,
        layer_dirs=args.layer_dir,
        scratch_devices=args.scratch_device,
        runtime=args.runtime,
        manage_containers=not args.no_containers,
        cgroup_parent=args.cgroup_parent,
        console=args.console,
        trace_file=args.trace,
        kata=args.kata,
    )


def _sim_config(args: argparse.Namespace) -> SimConfig | None:
    """The simulated launch: HOST_DATA and MEASUREMENT as `report get --backend sim` takes them."""
    fields = launch_fields(args)
    if not fields:
        return None
    if args.snp != "sim":
        raise AgentError("the simulated launch options (--sim-...) need --snp sim")
    from guestagent.snp.sim import SimConfig  # the simulator's module: only when asked for

    return SimConfig(**fields)


def run(args: argparse.Namespace) -> int:
    timeline.stamp("agent_python", timeline.STARTED)
    timeline.stamp("agent_imported")
    configure_logging(args.log_level)
    try:
        config = config_from_args(args)
    except AgentError as exc:
        print(f"guestagent serve: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        asyncio.run(Agent(config).serve())
    except AgentError as exc:
        print(f"guestagent serve: {exc.code.value}: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return EXIT_OK
