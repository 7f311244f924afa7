"""The SEV-SNP launch digest of a guest image: the MEASUREMENT its reports must carry.

With measured direct boot QEMU puts a table of SHA-256 hashes of the kernel, the initramfs and
the NUL-terminated command line into the page that the AMD SEV build of OVMF (`AmdSevX64`)
declares in its metadata (SNP_KERNEL_HASHES). The secure processor's launch digest covers the
firmware pages, that table and each vCPU's initial state (VMSA: vCPU count and type, guest
features); OVMF checks what it loads against the table. The command line carries the
dm-verity root hash, so the root filesystem is bound too. Host-side: computing the digest
needs the optional `sev-snp-measure` package (`pip install 'guestagent[measure]'`).
"""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Any

from guestagent.errors import InvalidArgumentError
from guestagent.records import record

__all__ = [
    "COVERS",
    "OVMF_DIRS",
    "LaunchDigestUnavailable",
    "LaunchImage",
    "find_amdsev_ovmf",
    "has_kernel_hashes",
]

OVMF_DIRS = ("/usr/share/ovmf", "/usr/share/OVMF", "/usr/share/qemu")
COVERS = (
    "OVMF firmware pages, the SEV hash table (SHA-256 of kernel, initramfs and NUL-terminated "
    "command line, including the dm-verity root hash of the root filesystem), and the initial "
    "VMSA of each vCPU (vCPU count and type, guest features)"
)
MEASURE_EXTRA = "sev-snp-measure is not installed: pip install 'guestagent[measure]'"


class LaunchDigestUnavailable(Exception):
    """The digest cannot be computed here (no sev-snp-measure, or a firmware without the
    SNP_KERNEL_HASHES section); the message says which."""


def _sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _measure_lib() -> Any:
    try:
        import sevsnpmeasure.guest
        import sevsnpmeasure.ovmf
        import sevsnpmeasure.sev_hashes
        import sevsnpmeasure.vcpu_types
    except ImportError:
        raise LaunchDigestUnavailable(MEASURE_EXTRA) from None
    return sevsnpmeasure


def has_kernel_hashes(path: str | os.PathLike[str]) -> bool:
    """True when the firmware declares an SNP_KERNEL_HASHES page and a hashes-table entry."""
    ovmf_mod = _measure_lib().ovmf
    ovmf = ovmf_mod.OVMF(str(path))
    return (
        ovmf.has_metadata_section(ovmf_mod.SectionType.SNP_KERNEL_HASHES)
        and ovmf.is_sev_hashes_table_supported()
    )


def _parsed_has_kernel_hashes(path: Path) -> bool:
    try:
        return has_kernel_hashes(path)
    except LaunchDigestUnavailable:
        raise
    except Exception as exc:  # sev-snp-measure's parser raises whatever it meets
        raise LaunchDigestUnavailable(
            f"{path}: not an OVMF image with SEV metadata ({exc or type(exc).__name__})"
        ) from None


def find_amdsev_ovmf(dirs: tuple[str, ...] = OVMF_DIRS) -> tuple[str | None, list[str]]:
    """An installed OVMF that can measure a direct boot, and every candidate that was checked."""
    checked: list[str] = []
    for directory in dirs:
        for path in sorted(glob.glob(os.path.join(directory, "*.fd"))):
            if "VARS" in os.path.basename(path).upper():
                continue
            checked.append(path)
            try:
                if has_kernel_hashes(path):
                    return path, checked
            except LaunchDigestUnavailable:
                raise
            except Exception:  # not an OVMF image sev-snp-measure can parse
                continue
    return None, checked


@record
class LaunchImage:
    """What the host launches: firmware, kernel, initramfs, command line and vCPUs."""

    ovmf: Path | None
    kernel: Path
    initrd: Path
    cmdline: str
    vcpus: int = 1
    vcpu_type: str = "EPYC-v4"
    guest_features: int = 0x1

    def __post_init__(self) -> None:
        if self.vcpus < 1:
            raise InvalidArgumentError("vcpus must be at least 1")
        if "\0" in self.cmdline:
            raise InvalidArgumentError("the command line cannot contain NUL")

    def input_hashes(self) -> dict[str, str]:
        """SHA-256 of each input as the hash table holds it (the command line NUL-terminated)."""
        hashes = {
            "kernel_sha256": _sha256_file(self.kernel),
            "initrd_sha256": _sha256_file(self.initrd),
            "cmdline_sha256": hashlib.sha256(self.cmdline.encode() + b"\0").hexdigest(),
        }
        if self.ovmf is not None:
            hashes["ovmf_sha256"] = _sha256_file(self.ovmf)
        return hashes

    def hash_table_sha256(self) -> str:
        lib = _measure_lib()
        table = lib.sev_hashes.SevHashes(str(self.kernel), str(self.initrd), self.cmdline)
        return hashlib.sha256(table.construct_table()).hexdigest()

    def launch_digest(self) -> bytes:
        """The 48-byte SNP launch digest; LaunchDigestUnavailable when it cannot be made."""
        lib = _measure_lib()
        from sevsnpmeasure.sev_mode import SevMode
        from sevsnpmeasure.vmm_types import VMMType

        signatures = lib.vcpu_types.CPU_SIGS
        if self.vcpu_type not in signatures:
            raise InvalidArgumentError(
                f"unknown vCPU type {self.vcpu_type!r} (one of {', '.join(signatures)})"
            )
        if self.ovmf is None or not _parsed_has_kernel_hashes(self.ovmf):
            raise LaunchDigestUnavailable(
                f"{self.ovmf or 'no firmware given'}: no SNP_KERNEL_HASHES section, so it cannot "
                "measure a direct boot (Debian's ovmf has none): build the AmdSevX64 firmware "
                "with scripts/build-ovmf.sh and pass it"
            )
        return lib.guest.calc_launch_digest(
            SevMode.SEV_SNP,
            self.vcpus,
            signatures[self.vcpu_type],
            str(self.ovmf),
            str(self.kernel),
            str(self.initrd),
            self.cmdline,
            self.guest_features,
            vmm_type=VMMType.QEMU,
        )
