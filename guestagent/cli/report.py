"""`guestagent report get|show|verify|sim-certs`: SEV-SNP attestation reports.

Exit codes: 0 success (every check passed), 1 failed (the message names the check and both
values), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from guestagent.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from guestagent.cli.simlaunch import add_launch_options, launch_fields, parse_hex
from guestagent.errors import AgentError, InvalidArgumentError
from guestagent.snp.amdcerts import load_certificate, load_certificates
from guestagent.snp.device import BACKEND_KINDS, open_backend
from guestagent.snp.errors import BadReportError
from guestagent.snp.fields import Product
from guestagent.snp.report import parse_report
from guestagent.snp.show import format_report, format_result
from guestagent.snp.sim import SimBackend, SimConfig
from guestagent.snp.verify import VerifyOptions, verify_report

__all__ = ["register"]


class UsageError(Exception):
    """Bad arguments or unreadable input: exit 2."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _min_tcb(text: str) -> dict[str, int]:
    """`bl=3,tee=0,snp=8,ucode=115[,fmc=1]` -> {"bl_spl": 3, ...}."""
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--min-tcb: expected NAME=NUMBER, got {part!r}")
        key = name.strip().lower()
        out[key if key.endswith("_spl") else f"{key}_spl"] = int(value)
    return out


def _product(value: str | None) -> Product | None:
    return Product(value) if value else None


def _sim_config(args: argparse.Namespace) -> SimConfig | None:
    fields: dict[str, Any] = {}
    if args.sim_product:
        fields["product"] = Product(args.sim_product)
    if args.sim_version:
        fields["report_version"] = args.sim_version
    fields.update(launch_fields(args))
    if args.sim_policy:
        fields["policy"] = int(args.sim_policy, 0)
    if args.sim_tcb:
        fields["tcb"] = int(args.sim_tcb, 16)
    if args.sim_signing_key:
        fields["signing_key"] = args.sim_signing_key
    if not fields and args.backend != "sim":
        return None
    return SimConfig(**fields)


def _cmd_get(args: argparse.Namespace) -> int:
    report_data = bytes(64)
    if args.report_data:
        report_data = parse_hex(args.report_data, 64, "--report-data")
    if args.sim_state and args.backend != "sim":
        raise UsageError("--sim-state is only for --backend sim")
    backend = open_backend(args.backend, sim_state=args.sim_state, sim_config=_sim_config(args))
    raw = backend.get_report(report_data, args.vmpl)
    if args.output:
        Path(args.output).write_bytes(raw)
    report = parse_report(raw)
    description = backend.describe()
    if args.json:
        print(json.dumps({"backend": description, "report": report.to_json()}, indent=1))
        return EXIT_OK
    label = "SIMULATED" if backend.simulated else "hardware"
    print(f"backend: {description['name']} ({label})")
    print(format_report(report))
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        report = parse_report(_read(args.file, "report"))
    except BadReportError as exc:
        raise UsageError(f"{args.file}: {exc.message}") from None
    product = _product(args.product)
    if args.json:
        print(json.dumps(report.to_json(product), indent=1))
    else:
        print(format_report(report, product))
    return EXIT_OK


def _verify_options(args: argparse.Namespace) -> VerifyOptions:
    roots: tuple[Any, ...] = ()
    if args.trust_sim_root:
        roots = tuple(load_certificates(_read(args.trust_sim_root, "trusted root")))
    return VerifyOptions(
        product=_product(args.product),
        trusted_roots=roots,
        expected_measurement=parse_hex(args.expect_measurement, 48, "--expect-measurement")
        if args.expect_measurement
        else None,
        expected_host_data=parse_hex(args.expect_host_data, 32, "--expect-host-data")
        if args.expect_host_data
        else None,
        expected_report_data=parse_hex(args.expect_report_data, 64, "--expect-report-data")
        if args.expect_report_data
        else None,
        expected_vmpl=args.expect_vmpl,
        min_tcb=_min_tcb(args.min_tcb) if args.min_tcb else {},
        min_guest_svn=args.min_guest_svn,
        allow_debug=args.allow_debug,
        allow_migration_agent=args.allow_migration_agent,
        allow_smt=not args.no_smt,
        now=_when(args.at) if args.at else None,
    )


def _when(text: str) -> datetime:
    """An ISO 8601 time (`2025-06-01`, `2025-06-01T12:00:00Z`, `...+02:00`); UTC if no zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2025-06-01T12:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cmd_verify(args: argparse.Namespace) -> int:
    raw = _read(args.file, "report")
    try:
        leaf = load_certificate(_read(args.cert, "certificate"))
        chain = load_certificates(_read(args.chain, "chain"))
    except BadReportError as exc:
        raise UsageError(exc.message) from None
    result = verify_report(raw, leaf, chain, _verify_options(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        print(format_result(result))
    for check in result.failures:
        print(f"guestagent report: check failed: {check.describe()}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_sim_certs(args: argparse.Namespace) -> int:
    if not args.sim_state:
        raise UsageError("sim-certs needs --sim-state DIR")
    backend = SimBackend(args.sim_state, _sim_config(args) or SimConfig())
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table = backend.get_certificates()
    kind = backend.config.signing_key
    leaf = load_certificate(table.vcek or table.vlek or b"")
    chain = backend.state.chain(kind)
    (out / f"{kind}.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (out / f"{kind}.der").write_bytes(leaf.public_bytes(Encoding.DER))
    (out / "ask_ark.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain))
    (out / "ark.pem").write_bytes(chain[-1].public_bytes(Encoding.PEM))
    print(f"wrote SIMULATED {kind}.pem, {kind}.der, ask_ark.pem, ark.pem to {out}")
    return EXIT_OK


def _run(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (UsageError, InvalidArgumentError, ValueError) as exc:
            print(f"guestagent report: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return EXIT_USAGE
        except AgentError as exc:
            print(f"guestagent report: {exc.code.value}: {exc.message}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _add_sim_options(
    parser: argparse.ArgumentParser, title: str = "simulator (only with --backend sim)"
) -> None:
    group = parser.add_argument_group(title)
    group.add_argument(
        "--sim-state",
        metavar="DIR",
        required=title.startswith("the simulated chip"),
        help="simulator state directory (its keys: the same chip across runs)",
    )
    group.add_argument("--sim-product", choices=[p.value for p in Product])
    group.add_argument("--sim-version", type=int, choices=(2, 3, 5))
    add_launch_options(group)
    group.add_argument("--sim-policy", metavar="INT", help="guest policy (e.g. 0x30000)")
    group.add_argument("--sim-tcb", metavar="HEX", help="TCB_VERSION as 16 hex digits")
    group.add_argument("--sim-signing-key", choices=("vcek", "vlek"))


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="verify a report's signature, chain and claims")
    p.add_argument("file")
    p.add_argument("--cert", required=True, help="VCEK or VLEK (DER or PEM)")
    p.add_argument("--chain", required=True, help="ASK/ASVK + ARK (PEM)")
    p.add_argument("--product", choices=[p.value for p in Product])
    p.add_argument("--trust-sim-root", metavar="PEM", help="trust this root instead of AMD's")
    p.add_argument("--expect-measurement", metavar="HEX")
    p.add_argument("--expect-host-data", metavar="HEX")
    p.add_argument("--expect-report-data", metavar="HEX")
    p.add_argument("--expect-vmpl", type=int)
    p.add_argument("--min-tcb", metavar="bl=N,tee=N,snp=N,ucode=N[,fmc=N]")
    p.add_argument("--min-guest-svn", type=int)
    p.add_argument("--allow-debug", action="store_true")
    p.add_argument("--allow-migration-agent", action="store_true")
    p.add_argument("--no-smt", action="store_true", help="require SMT disallowed and disabled")
    p.add_argument(
        "--at",
        metavar="TIME",
        help="check certificate validity as of this ISO 8601 time (an archived report); "
        "default: now",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(_cmd_verify))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="SEV-SNP attestation reports")
    sub = parser.add_subparsers(dest="report_command", metavar="SUBCOMMAND", required=True)

    get = sub.add_parser("get", help="get a fresh report from the SNP backend")
    get.add_argument("--backend", choices=BACKEND_KINDS, default="auto")
    get.add_argument("--report-data", metavar="HEX", help="64 bytes of report data")
    get.add_argument("--vmpl", type=int, default=0)
    get.add_argument("-o", "--output", metavar="FILE", help="write the raw report here")
    get.add_argument("--json", action="store_true")
    _add_sim_options(get)
    get.set_defaults(func=_run(_cmd_get))

    show = sub.add_parser("show", help="decode a raw report")
    show.add_argument("file")
    show.add_argument("--json", action="store_true")
    show.add_argument("--product", choices=[p.value for p in Product])
    show.set_defaults(func=_run(_cmd_show))

    _add_verify(sub)

    certs = sub.add_parser(
        "sim-certs",
        help="write the simulator's VCEK/VLEK, ASK and ARK",
        description="Write the SIMULATED chip's certificates to DIR: vcek.pem/.der (or vlek), "
        "ask_ark.pem and ark.pem; verify its reports with `report verify --trust-sim-root "
        "DIR/ark.pem`.",
    )
    certs.add_argument("-o", "--output", metavar="DIR", required=True)
    _add_sim_options(certs, "the simulated chip (--sim-state is the one `serve --snp sim` used)")
    certs.set_defaults(func=_run(_cmd_sim_certs), backend="sim")
