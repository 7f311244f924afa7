"""`guestagent policy hash|show|check`: host-side tooling for measured execution policies."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from guestagent.errors import AgentError
from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.measure import Measurement, measure
from guestagent.policy.summary import printable, summarize
from guestagent.policy.summary_text import format_summary
from guestagent.policy.trace import replay

__all__ = ["register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Unreadable(Exception):
    pass


def _load(path: str) -> tuple[Measurement, Policy]:
    """Read, measure and parse a JSON policy or an initdata TOML wrapping one."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror}") from None
    try:
        measurement = measure(raw)
        return measurement, parse_policy(measurement.policy_bytes)
    except AgentError as exc:
        raise _Unreadable(f"{path}: {exc.message}") from None


def _hash(args: argparse.Namespace) -> int:
    measurement, _ = _load(args.file)
    # QEMU's sev-snp-guest object takes HOST_DATA as base64: host-data=...
    qemu = base64.b64encode(measurement.host_data).decode()
    print(qemu if args.qemu else measurement.host_data_hex)
    if measurement.format == "initdata":
        print(f"(initdata, {measurement.algorithm}: {measurement.digest.hex()})", file=sys.stderr)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    measurement, policy = _load(args.file)
    summary = summarize(policy, measurement.host_data_hex)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_summary(summary))
    return EXIT_OK


def _initdata(args: argparse.Namespace) -> int:
    from guestagent.policy.initdata import wrap_initdata

    measurement, _ = _load(args.file)  # a policy the agent would refuse is refused here
    if measurement.format != "json":
        raise _Unreadable(f"{args.file} is already an initdata document")
    output = Path(args.output)
    if not output.parent.is_dir():
        raise _Unreadable(f"-o {args.output}: directory {output.parent} does not exist")
    try:
        document = wrap_initdata(measurement.policy_bytes, args.algorithm)
    except AgentError as exc:
        raise _Unreadable(f"{args.file}: {exc.message}") from None
    output.write_bytes(document)
    wrapped = measure(document)
    print(f"wrote {output} (initdata, {args.algorithm})")
    print(f"HOST_DATA {wrapped.host_data_hex}")
    print(f"host-data={base64.b64encode(wrapped.host_data).decode()}")
    return EXIT_OK


def _line(number: int, decision: Any) -> str:
    verdict = "ALLOW" if decision.allowed else "DENY "
    return f"{number:4d} {verdict} {decision.point}: {decision.rule}: {decision.reason}"


def _check(args: argparse.Namespace) -> int:
    from guestagent.server.trace import load_trace

    _, policy = _load(args.policy)
    try:
        text = Path(args.trace).read_text(encoding="utf-8")
        trace = load_trace(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"cannot read {args.trace}: {exc}") from None
    except AgentError as exc:
        raise _Unreadable(f"{args.trace}: {exc.message}") from None
    decisions = replay(policy, [(point, request) for point, request, _ in trace])
    denied = differ = 0
    for number, (decision, (_, _, recorded)) in enumerate(zip(decisions, trace, strict=True), 1):
        line = _line(number, decision)
        if recorded is not None and recorded["allowed"] != decision.allowed:
            differ += 1
            line += f"  (DIFFERS: the agent {'allowed' if recorded['allowed'] else 'denied'} it)"
        print(printable(line))
        if not decision.allowed:
            denied += 1
            if args.details:
                print(printable("       " + json.dumps(dict(decision.details), sort_keys=True)))
    recorded_count = sum(1 for _, _, r in trace if r is not None)
    summary = f"{len(decisions)} requests, {len(decisions) - denied} allowed, {denied} denied"
    if recorded_count:
        summary += (
            f"; {differ} of {recorded_count} differ from the recorded decisions"
            if differ
            else f"; all {recorded_count} recorded decisions reproduced"
        )
    print(summary)
    return EXIT_FAILED if denied or differ else EXIT_OK


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _Unreadable as exc:
            print(f"guestagent policy: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _exec_argv(text: str) -> tuple[str | None, list[str]]:
    """`--exec '[argv...]'` (every container) or `--exec 'NAME=[argv...]'` (one)."""
    name, json_text = (None, text) if text.lstrip().startswith("[") else text.split("=", 1)
    try:
        argv = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise _Unreadable(f"--exec {text!r}: not a JSON list of strings ({exc.msg})") from None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise _Unreadable(f"--exec {text!r}: not a JSON list of strings")
    return name, argv


def _gen(args: argparse.Namespace) -> int:
    from guestagent.cli.policygen import container_spec, exec_process_spec, finish, generate

    output = Path(args.output)
    if not output.parent.is_dir():
        raise _Unreadable(f"-o {args.output}: directory {output.parent} does not exist")
    execs = [_exec_argv(text) for text in args.exec or []]
    layers_dir = Path(args.layers_dir or output.resolve().parent / "layers")
    try:
        generated = generate(
            args.layouts,
            str(layers_dir),
            names=args.name,
            manifests=args.manifest,
            user=args.user,
            allow_stdio=args.allow_stdio,
        )
    except AgentError as exc:
        print(f"guestagent policy: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    unknown = {n for n, _ in execs if n is not None} - {e["name"] for e in generated.entries}
    if unknown:
        raise _Unreadable(f"--exec names no generated container: {sorted(unknown)}")
    for entry in generated.entries:
        entry["exec_processes"] = [
            {"command": argv, "signals": entry["signals"][:1]}
            for name, argv in execs
            if name in (None, entry["name"])
        ]
    document = finish(generated.entries)
    output.write_bytes(document)
    print(f"wrote {output}")
    for entry in generated.entries:
        name = entry["name"]
        spec = output.parent / f"{name}.spec.json"
        spec.write_text(json.dumps(container_spec(entry), indent=2) + "\n")
        print(f"  container {json.dumps(name)}: spec {spec}")
        for number in range(len(entry["exec_processes"])):
            process = output.parent / f"{name}.exec{number}.json"
            process.write_text(json.dumps(exec_process_spec(entry, number), indent=2) + "\n")
            print(f"    exec {number}: process {process}")
        for number, root in enumerate(entry["layers"]):
            print(f"    layer {layers_dir / name / f'layer{number}.img'} root {root}")
    print(f"HOST_DATA {measure(document).host_data_hex}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("policy", help="hash, audit and check execution policies")
    commands = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    hash_cmd = commands.add_parser("hash", help="print the HOST_DATA value (hex) for a policy")
    hash_cmd.add_argument("file", help="a JSON policy or an initdata TOML wrapping one")
    hash_cmd.add_argument(
        "--qemu",
        action="store_true",
        help="print it as QEMU's sev-snp-guest host-data= wants it (base64)",
    )
    hash_cmd.set_defaults(func=_guard(_hash))

    initdata = commands.add_parser(
        "initdata", help="wrap a JSON policy into an initdata TOML (kata, trustee)"
    )
    initdata.add_argument("file", help="a JSON policy")
    initdata.add_argument("-o", "--output", required=True, help="where to write the TOML")
    initdata.add_argument("--algorithm", default="sha384", choices=["sha256", "sha384", "sha512"])
    initdata.set_defaults(func=_guard(_initdata))

    show = commands.add_parser("show", help="audit summary: what may run, and risky grants")
    show.add_argument("file", help="a JSON policy or an initdata TOML wrapping one")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=_guard(_show))

    check = commands.add_parser("check", help="replay a recorded request trace offline")
    check.add_argument("policy", help="a JSON policy or an initdata TOML wrapping one")
    check.add_argument(
        "--trace",
        required=True,
        help="JSON lines of {point, input or oci[, decision]}, as `serve --trace` writes",
    )
    check.add_argument("--details", action="store_true", help="print each denial's details")
    check.set_defaults(func=_guard(_check))

    gen = commands.add_parser(
        "gen",
        help="a policy, and the OCI specs it accepts, from OCI image layouts",
        description="One container per layout. Writes the policy (-o), and beside it per "
        "container NAME.spec.json (the create_container spec the policy accepts) and "
        "NAME.execN.json (the exec_process process of each --exec); layer images go to "
        "--layers-dir/NAME/layerN.img.",
    )
    gen.add_argument("layouts", nargs="+", metavar="LAYOUT", help="an OCI image layout dir")
    gen.add_argument("-o", "--output", required=True, help="where to write the policy")
    gen.add_argument("--layers-dir", help="where to build the layer images (default: beside)")
    gen.add_argument(
        "--name", action="append", help="container name, per layout in order (default: dir)"
    )
    gen.add_argument(
        "--manifest",
        action="append",
        metavar="REF|OS/ARCH|DIGEST",
        help="which manifest of a layout's index, per layout in order (needed when several)",
    )
    gen.add_argument("--user", help="uid[:gid] when the image names a user")
    gen.add_argument("--allow-stdio", action="store_true", help="forward the workload's stdio")
    gen.add_argument(
        "--exec",
        action="append",
        metavar="[NAME=]JSON",
        help='an argv the host may exec, e.g. \'["/bin/cat", "/etc/motd"]\' (every container) '
        "or 'web=[...]' (one)",
    )
    gen.set_defaults(func=_guard(_gen))
