"""`guestagent image measure`: the SEV-SNP launch measurement to expect for a guest image.

The launch digest binds the firmware, the kernel, the initramfs and the kernel command line
(and through it the root filesystem's dm-verity root hash): see guestagent.snp.launch. It
needs an OVMF with an SNP_KERNEL_HASHES section (the AmdSevX64 build that
scripts/build-ovmf.sh makes; Debian's ovmf package has none) and the optional
`sev-snp-measure` package (`pip install 'guestagent[measure]'`). Without them the command
prints the inputs' hashes and says why the digest is unavailable. The host must launch with
exactly these files and this command line, or the report's MEASUREMENT differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from guestagent.errors import InvalidArgumentError
from guestagent.snp.launch import COVERS, LaunchDigestUnavailable, LaunchImage, find_amdsev_ovmf

__all__ = ["measure", "register"]


def _image(args: argparse.Namespace, ovmf: str | None) -> LaunchImage:
    return LaunchImage(
        ovmf=Path(ovmf) if ovmf else None,
        kernel=Path(args.kernel),
        initrd=Path(args.initrd),
        cmdline=args.append,
        vcpus=args.vcpus,
        vcpu_type=args.vcpu_type,
        guest_features=int(args.guest_features, 0),
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs' hashes, and the launch digest or why it is unavailable."""
    result: dict[str, Any] = {
        "cmdline": args.append,
        "vcpus": args.vcpus,
        "vcpu_type": args.vcpu_type,
        "guest_features": args.guest_features,
        "launch_digest": None,
        "covers": COVERS,
    }
    result.update(_image(args, args.ovmf).input_hashes())
    try:
        ovmf, checked = (args.ovmf, [args.ovmf]) if args.ovmf else find_amdsev_ovmf()
        result["ovmf_checked"] = checked
        image = _image(args, ovmf)
        result["hash_table_sha256"] = image.hash_table_sha256()
        digest = image.launch_digest()
    except LaunchDigestUnavailable as exc:
        result["unavailable"] = str(exc)
        return result
    result.update(ovmf=ovmf, ovmf_sha256=image.input_hashes()["ovmf_sha256"])
    result["launch_digest"] = digest.hex()
    return result


def _run_measure(args: argparse.Namespace) -> int:
    for path in (args.kernel, args.initrd, args.ovmf):
        if path and not os.path.isfile(path):
            print(f"guestagent image measure: no such file: {path}")
            return 2
    try:
        result = measure(args)
    except (InvalidArgumentError, ValueError) as exc:
        print(f"guestagent image measure: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    digest = result["launch_digest"]
    if args.digest:
        if digest is None:
            print(f"guestagent image measure: {result['unavailable']}", file=sys.stderr)
            return 1
        print(digest)
        return 0
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key in sorted(result):
            print(f"{key}: {result[key]}")
    return 1 if digest is None and args.require_digest else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("image", help="guest image tooling (host side)")
    commands = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    m = commands.add_parser(
        "measure",
        help="expected SEV-SNP launch measurement for firmware + kernel + initramfs + cmdline",
        description=__doc__.split("\n\n")[1],
    )
    m.add_argument("--ovmf", help="OVMF AmdSevX64 build (default: search Debian's OVMF paths)")
    m.add_argument("--kernel", required=True, help="the guest kernel (bzImage)")
    m.add_argument("--initrd", required=True, help="the initramfs")
    m.add_argument("--append", required=True, help="the exact kernel command line QEMU passes")
    m.add_argument("--vcpus", type=int, default=1)
    m.add_argument("--vcpu-type", default="EPYC-v4", help="QEMU CPU model (default EPYC-v4)")
    m.add_argument("--guest-features", default="0x1", help="SEV features (default 0x1)")
    out = m.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument(
        "--digest", action="store_true", help="print only the launch digest (exit 1 without one)"
    )
    m.add_argument(
        "--require-digest", action="store_true", help="exit 1 when no launch digest can be made"
    )
    m.set_defaults(func=_run_measure)
