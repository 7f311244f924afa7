"""`guestagent image measure`: the SEV-SNP launch measurement to expect for a guest image.

With SEV-SNP measured direct boot, QEMU puts a table of SHA-256 hashes of the kernel, the
initramfs and the command line (NUL-terminated) into a page that the AMD SEV build of OVMF
(OvmfPkg/AmdSev, `AmdSevX64`) declares in its metadata (SNP_KERNEL_HASHES); the launch digest
covers the firmware pages, that table and the initial vCPU state (VMSA). OVMF checks the
kernel, initramfs and command line it loads against the table, so the digest binds all three.
The root filesystem is covered through the command line: it carries the dm-verity root hash.

Debian's `ovmf` package ships no AmdSevX64 build (its OVMF*.fd lack SNP_KERNEL_HASHES): the
command then reports the three hashes and the hash table digest, says why the launch digest is
unavailable, and computes it when given `--ovmf` of an AmdSev build. Needs the optional
`sev-snp-measure` package (`pip install 'guestagent[measure]'`) for the table and digest.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
from typing import Any

__all__ = ["find_amdsev_ovmf", "measure", "register"]

OVMF_DIRS = ("/usr/share/ovmf", "/usr/share/OVMF", "/usr/share/qemu")
COVERS = (
    "OVMF firmware pages, the SEV hash table (SHA-256 of kernel, initramfs and NUL-terminated "
    "command line, including the dm-verity root hash of the root filesystem), and the initial "
    "VMSA of each vCPU (vCPU count and type, guest features)"
)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _has_kernel_hashes(path: str) -> bool:
    from sevsnpmeasure.ovmf import OVMF, SectionType

    sections = OVMF(path).metadata_items()
    return any(item.section_type() == SectionType.SNP_KERNEL_HASHES for item in sections)


def find_amdsev_ovmf(dirs: tuple[str, ...] = OVMF_DIRS) -> tuple[str | None, list[str]]:
    """An OVMF build with an SNP kernel-hashes section, and every candidate that was checked."""
    checked: list[str] = []
    for directory in dirs:
        for path in sorted(glob.glob(os.path.join(directory, "*.fd"))):
            if "VARS" in os.path.basename(path).upper():
                continue
            checked.append(path)
            try:
                if _has_kernel_hashes(path):
                    return path, checked
            except Exception:  # not an OVMF image sev-snp-measure can parse
                continue
    return None, checked


def measure(args: argparse.Namespace) -> dict[str, Any]:
    cmdline = args.append.encode() + b"\0"  # as QEMU hashes it
    result: dict[str, Any] = {
        "kernel_sha256": _sha256_file(args.kernel),
        "initrd_sha256": _sha256_file(args.initrd),
        "cmdline_sha256": hashlib.sha256(cmdline).hexdigest(),
        "cmdline": args.append,
        "vcpus": args.vcpus,
        "vcpu_type": args.vcpu_type,
        "launch_digest": None,
        "covers": COVERS,
    }
    try:
        from sevsnpmeasure import guest
        from sevsnpmeasure.sev_hashes import SevHashes
        from sevsnpmeasure.sev_mode import SevMode
        from sevsnpmeasure.vcpu_types import CPU_SIGS
        from sevsnpmeasure.vmm_types import VMMType
    except ImportError:
        result["unavailable"] = (
            "sev-snp-measure is not installed: pip install 'guestagent[measure]'"
        )
        return result
    table = SevHashes(args.kernel, args.initrd, args.append).construct_table()
    result["hash_table_sha256"] = hashlib.sha256(table).hexdigest()
    ovmf, checked = (args.ovmf, [args.ovmf]) if args.ovmf else find_amdsev_ovmf()
    result["ovmf_checked"] = checked
    if ovmf is None or not _has_kernel_hashes(ovmf):
        result["unavailable"] = (
            "no OVMF with an SNP_KERNEL_HASHES section (the AmdSevX64 build; Debian's ovmf "
            "package has none): pass --ovmf PATH to an AmdSev build for the launch digest"
        )
        return result
    digest = guest.calc_launch_digest(
        SevMode.SEV_SNP,
        args.vcpus,
        CPU_SIGS[args.vcpu_type],
        ovmf,
        args.kernel,
        args.initrd,
        args.append,
        int(args.guest_features, 0),
        vmm_type=VMMType.QEMU,
    )
    result.update(ovmf=ovmf, ovmf_sha256=_sha256_file(ovmf), launch_digest=digest.hex())
    return result


def _run_measure(args: argparse.Namespace) -> int:
    for path in (args.kernel, args.initrd, args.ovmf):
        if path and not os.path.isfile(path):
            print(f"guestagent image measure: no such file: {path}")
            return 2
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key in sorted(result):
            print(f"{key}: {result[key]}")
    if result["launch_digest"] is None and args.require_digest:
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("image", help="guest image tooling (host side)")
    commands = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    m = commands.add_parser(
        "measure",
        help="expected SEV-SNP launch measurement for kernel + initramfs + command line",
        description=__doc__.split("\n\n")[1],
    )
    m.add_argument("--kernel", required=True, help="the guest kernel (bzImage)")
    m.add_argument("--initrd", required=True, help="the initramfs")
    m.add_argument("--append", required=True, help="the exact kernel command line QEMU passes")
    m.add_argument("--ovmf", help="OVMF AmdSev build (default: search Debian's OVMF paths)")
    m.add_argument("--vcpus", type=int, default=1)
    m.add_argument("--vcpu-type", default="EPYC-v4", help="QEMU CPU model (default EPYC-v4)")
    m.add_argument("--guest-features", default="0x1", help="SEV features (default 0x1)")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.add_argument(
        "--require-digest", action="store_true", help="exit 1 when no launch digest can be made"
    )
    m.set_defaults(func=_run_measure)
