"""The one interface every SNP backend implements, and the derived-key request it takes.

Backends: `sevguest.SevGuestBackend` (/dev/sev-guest ioctls), `configfs.ConfigfsTsmBackend`
(/sys/kernel/config/tsm/report) and `sim.SimBackend` (a software secure processor, only when
asked for). `device.open_backend` chooses one. Every backend says whether it is simulated.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from guestagent.errors import InvalidArgumentError
from guestagent.records import record

if TYPE_CHECKING:  # the table (and uuid) load with the first certificates asked for
    from guestagent.snp.cert_table import CertTable

__all__ = [
    "REPORT_DATA_SIZE",
    "DerivedKeyRequest",
    "GuestField",
    "RootKey",
    "SnpBackend",
    "check_report_data",
    "check_vmpl",
]

REPORT_DATA_SIZE = 64
MAX_VMPL = 3


class GuestField(IntFlag):
    """MSG_KEY_REQ GUEST_FIELD_SELECT bits: which guest fields are mixed into a derived key."""

    POLICY = 1 << 0
    IMAGE_ID = 1 << 1
    FAMILY_ID = 1 << 2
    MEASUREMENT = 1 << 3
    GUEST_SVN = 1 << 4
    TCB_VERSION = 1 << 5


class RootKey(IntEnum):
    VCEK = 0
    VMRK = 1


@record(kw_only=True)
class DerivedKeyRequest:
    """The fields of `struct snp_derived_key_req` (anchors.md §5.1)."""

    root_key_select: int = RootKey.VCEK
    guest_field_select: int = 0
    vmpl: int = 0
    guest_svn: int = 0
    tcb_version: int = 0

    def __post_init__(self) -> None:
        if self.root_key_select not in (0, 1):
            raise InvalidArgumentError("root_key_select must be 0 (VCEK) or 1 (VMRK)")
        if self.guest_field_select & ~0x3F or self.guest_field_select < 0:
            raise InvalidArgumentError(
                f"guest_field_select 0x{self.guest_field_select:x} sets bits beyond 5"
            )
        check_vmpl(self.vmpl)
        if not 0 <= self.guest_svn < 1 << 32 or not 0 <= self.tcb_version < 1 << 64:
            raise InvalidArgumentError("guest_svn must fit u32 and tcb_version u64")


def check_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes | bytearray) or len(report_data) != REPORT_DATA_SIZE:
        size = len(report_data) if isinstance(report_data, bytes | bytearray) else "non-bytes"
        raise InvalidArgumentError(f"report data must be exactly 64 bytes, got {size}")
    return bytes(report_data)


def check_vmpl(vmpl: int) -> int:
    if not isinstance(vmpl, int) or not 0 <= vmpl <= MAX_VMPL:
        raise InvalidArgumentError(f"VMPL must be 0..{MAX_VMPL}, got {vmpl!r}")
    return vmpl


@runtime_checkable
class SnpBackend(Protocol):
    """What the agent needs from the secure processor."""

    name: str
    simulated: bool

    def get_report(self, report_data: bytes = bytes(64), vmpl: int = 0) -> bytes:
        """A fresh raw 0x4A0-byte attestation report carrying `report_data`."""
        ...

    def get_extended_report(
        self, report_data: bytes = bytes(64), vmpl: int = 0
    ) -> tuple[bytes, CertTable | None]:
        """The report plus the certificate table the host supplies (None when it has none)."""
        ...

    def get_derived_key(self, request: DerivedKeyRequest) -> bytes:
        """A 32-byte key derived by the secure processor."""
        ...

    def get_certificates(self) -> CertTable | None: ...

    def describe(self) -> dict[str, Any]:
        """Status for `status`/logs: at least {"name", "simulated"}."""
        ...
