"""Loading AMD certificates and reading the VCEK/VLEK X.509 extensions.

AMD's OIDs live under 1.3.6.1.4.1.3704.1 (anchors.md §4): struct version, product name, the
TCB SPLs (.3.x), hwID (= CHIP_ID) and the VLEK's CSP_ID. Pure apart from parsing bytes.
"""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from guestagent.records import field, record
from guestagent.snp.errors import BadReportError

__all__ = [
    "OID_CSP_ID",
    "OID_HWID",
    "OID_PRODUCT_NAME",
    "OID_STRUCT_VERSION",
    "SPL_OIDS",
    "AmdExtensions",
    "amd_extensions",
    "der_integer",
    "load_certificate",
    "load_certificates",
]

_AMD = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{_AMD}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_AMD}.2")
OID_HWID = x509.ObjectIdentifier(f"{_AMD}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{_AMD}.5")
SPL_OIDS = {
    "bl_spl": x509.ObjectIdentifier(f"{_AMD}.3.1"),
    "tee_spl": x509.ObjectIdentifier(f"{_AMD}.3.2"),
    "snp_spl": x509.ObjectIdentifier(f"{_AMD}.3.3"),
    "spl4": x509.ObjectIdentifier(f"{_AMD}.3.4"),
    "spl5": x509.ObjectIdentifier(f"{_AMD}.3.5"),
    "spl6": x509.ObjectIdentifier(f"{_AMD}.3.6"),
    "spl7": x509.ObjectIdentifier(f"{_AMD}.3.7"),
    "ucode_spl": x509.ObjectIdentifier(f"{_AMD}.3.8"),
    "fmc_spl": x509.ObjectIdentifier(f"{_AMD}.3.9"),
}


def _quietly(load, data: bytes) -> x509.Certificate:
    # AMD issues every VCEK with serial number 0, which RFC 5280 forbids; cryptography warns
    # (CryptographyDeprecationWarning) on each load. That is expected for these certificates,
    # so silence exactly that warning here, and only around this one call.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Parsed a serial number which wasn't positive",
            category=CryptographyDeprecationWarning,
        )
        return load(data)


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate from PEM or DER bytes."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return _quietly(x509.load_pem_x509_certificate, data)
        return _quietly(x509.load_der_x509_certificate, data)
    except ValueError as exc:
        raise BadReportError(f"not a valid X.509 certificate: {exc}") from None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the single certificate of DER bytes."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return list(_quietly(x509.load_pem_x509_certificates, data))
        return [_quietly(x509.load_der_x509_certificate, data)]
    except ValueError as exc:
        raise BadReportError(f"not a valid certificate bundle: {exc}") from None


def der_integer(value: int) -> bytes:
    """DER INTEGER for a small non-negative value (the SPL extensions' encoding)."""
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _parse_der_integer(raw: bytes, what: str) -> int:
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2 or raw[1] > 8:
        raise BadReportError(f"VCEK extension {what} is not a small DER INTEGER: {raw.hex()}")
    if raw[2] & 0x80:
        raise BadReportError(f"VCEK extension {what} is negative: {raw.hex()}")
    return int.from_bytes(raw[2:], "big")


def _parse_ia5(raw: bytes, what: str) -> str:
    if len(raw) < 2 or raw[0] != 0x16 or raw[1] != len(raw) - 2 or raw[1] > 127:
        raise BadReportError(f"VCEK extension {what} is not a short IA5String: {raw.hex()}")
    return raw[2:].decode("ascii", errors="replace")


def _parse_hwid(raw: bytes) -> bytes:
    # AMD's KDS writes the raw 64 (Milan/Genoa) or 8 (Turin) bytes; some issuers wrap them in a
    # DER OCTET STRING. Accept both, distinguished by the exact wrapped length.
    for size in (64, 8):
        if len(raw) == size + 2 and raw[0] == 0x04 and raw[1] == size:
            return raw[2:]
    return raw


@record
class AmdExtensions:
    """What a VCEK/VLEK says about the chip and TCB it was issued for."""

    struct_version: int | None
    product_name: str | None
    spls: dict[str, int] = field(default_factory=dict)
    hwid: bytes | None = None
    csp_id: str | None = None


def amd_extensions(cert: x509.Certificate) -> AmdExtensions:
    raw: dict[x509.ObjectIdentifier, bytes] = {}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension):
            raw[ext.oid] = ext.value.value
    version = raw.get(OID_STRUCT_VERSION)
    name = raw.get(OID_PRODUCT_NAME)
    csp = raw.get(OID_CSP_ID)
    spls = {spl: _parse_der_integer(raw[oid], spl) for spl, oid in SPL_OIDS.items() if oid in raw}
    return AmdExtensions(
        struct_version=_parse_der_integer(version, "structVersion") if version else None,
        product_name=_parse_ia5(name, "productName") if name else None,
        spls=spls,
        hwid=_parse_hwid(raw[OID_HWID]) if OID_HWID in raw else None,
        csp_id=_parse_ia5(csp, "csp_id") if csp else None,
    )
