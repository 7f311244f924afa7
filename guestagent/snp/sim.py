"""A software AMD secure processor: reports signed exactly as hardware signs them.

Never chosen silently (see `device.open_backend`): `simulated` is True and `describe()` says
so. Reports are ECDSA P-384/SHA-384 over bytes [0, 0x2A0) with R/S little-endian, by a VCEK
(or VLEK) whose certificate chains to the simulator's own ARK, kept in a state directory.
Derived keys follow MSG_KEY_REQ: HKDF from the chip secret over the selected guest fields.
With `sign_in_child` (the agent's choice) each signature is made by a short-lived child
(`simsign`), so the agent's process never loads cryptography to sign.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import TYPE_CHECKING, Any

from guestagent.errors import InvalidArgumentError
from guestagent.records import record
from guestagent.snp.backend import (
    DerivedKeyRequest,
    GuestField,
    check_report_data,
    check_vmpl,
)
from guestagent.snp.errors import SnpFirmwareError
from guestagent.snp.fields import (
    SUPPORTED_VERSIONS,
    GuestPolicy,
    Product,
    SignerInfo,
    SigningKey,
    TcbVersion,
)
from guestagent.snp.simsign import ChildSigner, sign_p384
from guestagent.snp.simstate import SimState

if TYPE_CHECKING:  # the table (and uuid) load with the first certificates asked for
    from guestagent.snp.cert_table import CertTable
    from guestagent.snp.report import AttestationReport

__all__ = ["DEFAULT_TCB", "SimBackend", "SimConfig"]

INVALID_PARAM = 0x16
# CPUID family / model / stepping written into v3+ reports, per product.
_CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01)}
_CPUID[Product.TURIN] = (0x1A, 0x02, 0x00)
DEFAULT_TCB = {
    Product.MILAN: dict(bl_spl=3, tee_spl=0, snp_spl=8, ucode_spl=115),
    Product.GENOA: dict(bl_spl=7, tee_spl=0, snp_spl=14, ucode_spl=72),
    Product.TURIN: dict(fmc_spl=1, bl_spl=1, tee_spl=1, snp_spl=3, ucode_spl=9),
}
_DEFAULT_MEASUREMENT = hashlib.sha384(b"guestagent simulated launch").digest()


@record(kw_only=True)
class SimConfig:
    """The simulated guest's launch parameters. `tcb` None: the product's default TCB."""

    product: Product | None = None  # None: the state directory's product (Milan if new)
    report_version: int = 3
    measurement: bytes = _DEFAULT_MEASUREMENT
    host_data: bytes = bytes(32)
    policy: int = GuestPolicy.build(smt=True).raw
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    guest_svn: int = 0
    tcb: int | None = None
    chip_id: bytes | None = None  # None: the state directory's chip id
    platform_info: int = 0x1  # SMT_EN
    signing_key: str = "vcek"
    mask_chip_id: bool = False
    guest_vmpl: int = 0  # the VMPL the simulated guest runs at
    firmware: tuple[int, int, int] = (1, 55, 21)  # major, minor, build

    def __post_init__(self) -> None:
        if self.report_version not in SUPPORTED_VERSIONS:
            raise InvalidArgumentError("simulated report version must be one of 2, 3, 5")
        sizes = {"measurement": 48, "host_data": 32, "family_id": 16, "image_id": 16}
        for name, size in sizes.items():
            if len(getattr(self, name)) != size:
                raise InvalidArgumentError(f"simulator {name} must be {size} bytes")
        if self.chip_id is not None and len(self.chip_id) != 64:
            raise InvalidArgumentError("simulator chip_id must be 64 bytes")
        if self.signing_key not in ("vcek", "vlek"):
            raise InvalidArgumentError("simulator signing key must be vcek or vlek")


class SimBackend:
    """The simulator as an SnpBackend. Every description and status says simulated."""

    name = "sim"
    simulated = True

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        config: SimConfig | None = None,
        *,
        sign_in_child: bool = False,
    ):
        self.config = config or SimConfig()
        self.child_signer = ChildSigner() if sign_in_child else None
        self.state = SimState(state_dir, self.config.product)
        self.product = self.state.product
        self.tcb = self._tcb()
        self.chip_id = self.config.chip_id or self.state.chip_id
        self.report_id = os.urandom(32)  # REPORT_ID is fresh for each launch

    def _tcb(self) -> TcbVersion:
        layout = self.product.tcb_layout
        if self.config.tcb is None:
            return TcbVersion.build(layout, **DEFAULT_TCB[self.product])
        return TcbVersion(self.config.tcb, layout)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "simulated": True,
            "warning": "SIMULATED secure processor: reports do not chain to AMD",
            "state_dir": str(self.state.directory),
            "product": self.product.value,
            "signing_key": self.config.signing_key,
            "tcb": self.tcb.to_json(),
            "signs_in": "a child process" if self.child_signer else "this process",
        }

    # -- reports ------------------------------------------------------------------------------
    def build_report(self, report_data: bytes, vmpl: int) -> AttestationReport:
        """The unsigned report a guest at `vmpl` would get."""
        from guestagent.snp.report import AttestationReport

        cfg = self.config
        check_report_data(report_data)
        if check_vmpl(vmpl) < cfg.guest_vmpl:
            raise SnpFirmwareError(
                f"simulated firmware: VMPL {vmpl} is more privileged than the guest's "
                f"VMPL {cfg.guest_vmpl} (INVALID_PARAM)",
                fw_error=INVALID_PARAM,
            )
        vlek = cfg.signing_key == "vlek"
        signer = SignerInfo.build(
            signing_key=SigningKey.VLEK if vlek else SigningKey.VCEK,
            mask_chip_key=cfg.mask_chip_id,
        )
        fam, mod, step = _CPUID[self.product] if cfg.report_version >= 3 else (0, 0, 0)
        major, minor, build = cfg.firmware
        return AttestationReport(
            version=cfg.report_version,
            guest_svn=cfg.guest_svn,
            policy=cfg.policy,
            family_id=cfg.family_id,
            image_id=cfg.image_id,
            vmpl=vmpl,
            current_tcb=self.tcb.raw,
            platform_info=cfg.platform_info,
            signer_info=signer.raw,
            report_data=bytes(report_data),
            measurement=cfg.measurement,
            host_data=cfg.host_data,
            report_id=self.report_id,
            report_id_ma=b"\xff" * 32,  # no migration agent
            reported_tcb=self.tcb.raw,
            cpuid_fam_id=fam,
            cpuid_mod_id=mod,
            cpuid_step=step,
            chip_id=bytes(64) if vlek or cfg.mask_chip_id else self.chip_id,
            committed_tcb=self.tcb.raw,
            current_build=build,
            current_minor=minor,
            current_major=major,
            committed_build=build,
            committed_minor=minor,
            committed_major=major,
            launch_tcb=self.tcb.raw,
        )

    def sign(self, report: AttestationReport) -> AttestationReport:
        scalar = self.state.endorsement_scalar(self.config.signing_key, self.tcb)
        signer = self.child_signer.sign if self.child_signer else sign_p384
        r, s = signer(scalar, report.signed_bytes())
        return report.with_signature(r, s)

    def get_report(self, report_data: bytes = bytes(64), vmpl: int = 0) -> bytes:
        return self.sign(self.build_report(report_data, vmpl)).serialize()

    def get_extended_report(
        self, report_data: bytes = bytes(64), vmpl: int = 0
    ) -> tuple[bytes, CertTable | None]:
        return self.get_report(report_data, vmpl), self.get_certificates()

    def get_certificates(self) -> CertTable:
        """The table a host would attach: VCEK (or VLEK), ASK (or ASVK), ARK, all DER."""
        from cryptography.hazmat.primitives.serialization import Encoding  # not to sign

        from guestagent.snp.cert_table import ARK_GUID, ASK_GUID, VCEK_GUID, VLEK_GUID, CertTable

        kind = self.config.signing_key
        leaf = self.state.endorsement_cert(kind, self.tcb)
        intermediate, ark = self.state.chain(kind)
        entries = {
            VLEK_GUID if kind == "vlek" else VCEK_GUID: leaf.public_bytes(Encoding.DER),
            ASK_GUID: intermediate.public_bytes(Encoding.DER),
            ARK_GUID: ark.public_bytes(Encoding.DER),
        }
        return CertTable(entries)

    # -- derived keys -------------------------------------------------------------------------
    def get_derived_key(self, request: DerivedKeyRequest) -> bytes:
        """MSG_KEY_REQ: refuse what the firmware refuses, then mix in the selected fields."""
        cfg = self.config
        if request.vmpl < cfg.guest_vmpl:
            raise self._invalid(f"VMPL {request.vmpl} is below the guest's {cfg.guest_vmpl}")
        select = GuestField(request.guest_field_select)
        if GuestField.GUEST_SVN in select and request.guest_svn > cfg.guest_svn:
            raise self._invalid(f"guest_svn {request.guest_svn} exceeds the guest's")
        if GuestField.TCB_VERSION in select:
            asked = TcbVersion(request.tcb_version, self.tcb.layout)
            if self.tcb.at_least(asked):
                raise self._invalid(f"tcb_version 0x{request.tcb_version:016x} exceeds current")
        parts = [struct.pack("<IQI", request.root_key_select, int(select), request.vmpl)]
        chosen = {
            GuestField.POLICY: struct.pack("<Q", cfg.policy),
            GuestField.IMAGE_ID: cfg.image_id,
            GuestField.FAMILY_ID: cfg.family_id,
            GuestField.MEASUREMENT: cfg.measurement,
            GuestField.GUEST_SVN: struct.pack("<I", request.guest_svn),
            GuestField.TCB_VERSION: struct.pack("<Q", request.tcb_version),
        }
        parts += [value for flag, value in chosen.items() if flag in select]
        root = b"vmrk" if request.root_key_select else b"vcek"
        return self.state.derive(b"derived-key:" + root + b":" + b"".join(parts), 32)

    @staticmethod
    def _invalid(reason: str) -> SnpFirmwareError:
        return SnpFirmwareError(
            f"simulated firmware refused MSG_KEY_REQ: {reason} (INVALID_PARAM)",
            fw_error=INVALID_PARAM,
        )
