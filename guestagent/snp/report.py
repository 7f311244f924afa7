"""The SEV-SNP ATTESTATION_REPORT (0x4A0 bytes, little-endian), versions 2, 3 and 5.

Pure: `parse_report(bytes)` and `AttestationReport.serialize()` are exact inverses for every
valid report. Reserved ranges must be zero and unknown versions are refused, so a report that
parses is one whose every signed byte this module understands. Offsets: anchors.md §4.
"""

from __future__ import annotations

import struct
from typing import Any

from guestagent import records
from guestagent.records import record
from guestagent.snp.errors import BadReportError
from guestagent.snp.fields import (
    SUPPORTED_VERSIONS,
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    TcbLayout,
    TcbVersion,
    product_from_cpuid,
)

__all__ = [
    "ECDSA_P384_SHA384",
    "REPORT_SIZE",
    "SIGNATURE_COMPONENT_SIZE",
    "SIGNED_SIZE",
    "SUPPORTED_VERSIONS",
    "TCB_FIELDS",
    "AttestationReport",
    "parse_report",
]

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0  # the signature covers bytes [0, 0x2A0)
SIGNATURE_COMPONENT_SIZE = 72  # R and S are 72-byte little-endian fields
ECDSA_P384_SHA384 = 1

_INT_FORMATS = {"u8": "<B", "u32": "<I", "u64": "<Q"}

# (field name, offset, "u8"/"u32"/"u64" or a byte length), in offset order.
_LAYOUT: tuple[tuple[str, int, str | int], ...] = (
    ("version", 0x000, "u32"),
    ("guest_svn", 0x004, "u32"),
    ("policy", 0x008, "u64"),
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("vmpl", 0x030, "u32"),
    ("signature_algo", 0x034, "u32"),
    ("current_tcb", 0x038, "u64"),
    ("platform_info", 0x040, "u64"),
    ("signer_info", 0x048, "u32"),
    ("report_data", 0x050, 64),
    ("measurement", 0x090, 48),
    ("host_data", 0x0C0, 32),
    ("id_key_digest", 0x0E0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("reported_tcb", 0x180, "u64"),
    ("cpuid_fam_id", 0x188, "u8"),
    ("cpuid_mod_id", 0x189, "u8"),
    ("cpuid_step", 0x18A, "u8"),
    ("chip_id", 0x1A0, 64),
    ("committed_tcb", 0x1E0, "u64"),
    ("current_build", 0x1E8, "u8"),
    ("current_minor", 0x1E9, "u8"),
    ("current_major", 0x1EA, "u8"),
    ("committed_build", 0x1EC, "u8"),
    ("committed_minor", 0x1ED, "u8"),
    ("committed_major", 0x1EE, "u8"),
    ("launch_tcb", 0x1F0, "u64"),
    ("launch_mit_vector", 0x1F8, "u64"),
    ("current_mit_vector", 0x200, "u64"),
    ("signature_r", 0x2A0, SIGNATURE_COMPONENT_SIZE),
    ("signature_s", 0x2E8, SIGNATURE_COMPONENT_SIZE),
)

# [start, end) ranges that every version requires to be zero.
RESERVED_RANGES = ((0x04C, 0x050), (0x18B, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0))
RESERVED_RANGES += ((0x208, 0x2A0), (0x330, 0x4A0))

# Fields a version does not define yet: reserved (must be zero) in that version.
_UNDEFINED_IN_VERSION = {
    2: ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "launch_mit_vector", "current_mit_vector"),
    3: ("launch_mit_vector", "current_mit_vector"),
    5: (),
}

TCB_FIELDS = ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")


def _zero(size: int) -> bytes:
    return bytes(size)


@record(kw_only=True)
class AttestationReport:
    """Every field of the report, raw. Byte fields keep their exact bytes (R/S stay LE)."""

    version: int
    guest_svn: int = 0
    policy: int = 0
    family_id: bytes = _zero(16)
    image_id: bytes = _zero(16)
    vmpl: int = 0
    signature_algo: int = ECDSA_P384_SHA384
    current_tcb: int = 0
    platform_info: int = 0
    signer_info: int = 0
    report_data: bytes = _zero(64)
    measurement: bytes = _zero(48)
    host_data: bytes = _zero(32)
    id_key_digest: bytes = _zero(48)
    author_key_digest: bytes = _zero(48)
    report_id: bytes = _zero(32)
    report_id_ma: bytes = _zero(32)
    reported_tcb: int = 0
    cpuid_fam_id: int = 0
    cpuid_mod_id: int = 0
    cpuid_step: int = 0
    chip_id: bytes = _zero(64)
    committed_tcb: int = 0
    current_build: int = 0
    current_minor: int = 0
    current_major: int = 0
    committed_build: int = 0
    committed_minor: int = 0
    committed_major: int = 0
    launch_tcb: int = 0
    launch_mit_vector: int = 0
    current_mit_vector: int = 0
    signature_r: bytes = _zero(SIGNATURE_COMPONENT_SIZE)
    signature_s: bytes = _zero(SIGNATURE_COMPONENT_SIZE)

    def __post_init__(self) -> None:
        _check_fields(self)

    # -- decoded views ---------------------------------------------------------------------
    @property
    def guest_policy(self) -> GuestPolicy:
        return GuestPolicy(self.policy)

    @property
    def platform(self) -> PlatformInfo:
        return PlatformInfo(self.platform_info)

    @property
    def signer(self) -> SignerInfo:
        return SignerInfo(self.signer_info)

    @property
    def product(self) -> Product | None:
        """The product named by the CPUID fields (v3+), or None (v2 does not carry it)."""
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def tcb_layout(self, product: Product | None = None) -> TcbLayout:
        """The TCB layout: from `product` if given, else the CPUID family, else Milan/Genoa."""
        chosen = product or self.product
        return chosen.tcb_layout if chosen else TcbLayout.LEGACY

    def tcb(self, field: str, product: Product | None = None) -> TcbVersion:
        if field not in TCB_FIELDS:
            raise ValueError(f"{field} is not a TCB field")
        return TcbVersion(getattr(self, field), self.tcb_layout(product))

    @property
    def signature_rs(self) -> tuple[int, int]:
        """(R, S) as integers, converted from their little-endian fields."""
        r = int.from_bytes(self.signature_r, "little")
        return r, int.from_bytes(self.signature_s, "little")

    # -- encoding --------------------------------------------------------------------------
    def serialize(self) -> bytes:
        out = bytearray(REPORT_SIZE)
        for name, offset, kind in _LAYOUT:
            value = getattr(self, name)
            if isinstance(kind, int):
                out[offset : offset + kind] = value
            else:
                struct.pack_into(_INT_FORMATS[kind], out, offset, value)
        return bytes(out)

    def signed_bytes(self) -> bytes:
        return self.serialize()[:SIGNED_SIZE]

    def with_signature(self, r: int, s: int) -> AttestationReport:
        size = SIGNATURE_COMPONENT_SIZE
        return records.replace(
            self, signature_r=r.to_bytes(size, "little"), signature_s=s.to_bytes(size, "little")
        )

    def replace(self, **changes: Any) -> AttestationReport:
        return records.replace(self, **changes)

    def to_json(self, product: Product | None = None) -> dict[str, Any]:
        """Every field under its spec name in snake_case; byte fields as lowercase hex."""
        out: dict[str, Any] = {}
        for name, _offset, kind in _LAYOUT:
            if name in ("signature_r", "signature_s"):
                continue
            value = getattr(self, name)
            out[name] = value.hex() if isinstance(kind, int) else value
        for name in TCB_FIELDS:
            out[name] = self.tcb(name, product).to_json()
        out["policy"] = self.guest_policy.to_json()
        out["platform_info"] = self.platform.to_json()
        out["signer_info"] = self.signer.to_json()
        found = product or self.product
        out["product"] = found.value if found else None
        out["signature"] = {"r": self.signature_r.hex(), "s": self.signature_s.hex()}
        return out


def _int_limit(kind: str) -> int:
    return 1 << (8 * struct.calcsize(_INT_FORMATS[kind]))


def _check_fields(report: AttestationReport) -> None:
    if report.version not in SUPPORTED_VERSIONS:
        raise BadReportError(
            f"unsupported attestation report version {report.version} "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})",
            details={"version": report.version},
        )
    for name, offset, kind in _LAYOUT:
        value = getattr(report, name)
        if isinstance(kind, int):
            if not isinstance(value, bytes) or len(value) != kind:
                raise BadReportError(f"report field {name} must be {kind} bytes")
        elif not isinstance(value, int) or not 0 <= value < _int_limit(kind):
            raise BadReportError(f"report field {name} (offset 0x{offset:03x}) is out of range")
    for name in _UNDEFINED_IN_VERSION[report.version]:
        if getattr(report, name):
            raise BadReportError(
                f"report field {name} is reserved in version {report.version} and must be zero"
            )
    problem = report.signer.problem()
    if problem:
        raise BadReportError(problem, details={"signer_info": report.signer_info})


def parse_report(data: bytes) -> AttestationReport:
    """Parse a raw 0x4A0-byte report; raise BadReportError for any size/version/reserved error."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadReportError(f"report must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise BadReportError(
            f"attestation report must be {REPORT_SIZE} bytes, got {len(data)}",
            details={"size": len(data)},
        )
    for start, end in RESERVED_RANGES:
        nonzero = next((i for i in range(start, end) if data[i]), None)
        if nonzero is not None:
            raise BadReportError(
                f"reserved report byte at offset 0x{nonzero:03x} must be zero "
                f"(range 0x{start:03x}..0x{end - 1:03x})",
                details={"offset": nonzero},
            )
    values: dict[str, Any] = {}
    for name, offset, kind in _LAYOUT:
        if isinstance(kind, int):
            values[name] = data[offset : offset + kind]
        else:
            values[name] = struct.unpack_from(_INT_FORMATS[kind], data, offset)[0]
    return AttestationReport(**values)
