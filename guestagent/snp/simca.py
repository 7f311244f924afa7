"""Certificates of the simulated AMD key hierarchy: ARK -> ASK/ASVK -> VCEK/VLEK.

Shaped like AMD's: RSA-4096 ARK (self-signed) and ASK/ASVK, EC P-384 VCEK/VLEK, every link
RSASSA-PSS SHA-384 salt 48, and AMD's VCEK extensions (struct version, product name, SPLs,
hwID; CSP_ID on a VLEK). The organisation names the simulator so nobody mistakes it for AMD.
Pure: keys and times are passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from guestagent.snp.amdcerts import (
    OID_CSP_ID,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_STRUCT_VERSION,
    SPL_OIDS,
    der_integer,
)
from guestagent.snp.chain import AMD_PSS
from guestagent.snp.fields import Product, TcbVersion

__all__ = ["SIM_ORGANIZATION", "issue_ca", "issue_endorsement_key", "sim_name"]

SIM_ORGANIZATION = "guestagent SNP simulator (NOT AMD)"
_ROOT_LIFETIME = timedelta(days=25 * 365)
_LEAF_LIFETIME = timedelta(days=7 * 365)
# Order of AMD's own VCEKs (see the vectors): legacy lists spl4-7 before snp/ucode; Turin
# starts with fmc and has no spl4.
_LEGACY_SPL_ORDER = ("bl_spl", "tee_spl", "spl4", "spl5", "spl6", "spl7", "snp_spl", "ucode_spl")
_TURIN_SPL_ORDER = ("fmc_spl", "bl_spl", "tee_spl", "snp_spl", "spl5", "spl6", "spl7", "ucode_spl")


def sim_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign(builder: x509.CertificateBuilder, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=AMD_PSS)


def issue_ca(
    *,
    common_name: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
    now: datetime,
) -> x509.Certificate:
    """The ARK (issuer None: self-signed, unlimited path) or an ASK/ASVK (path length 0)."""
    subject = sim_name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + _ROOT_LIFETIME)
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return _sign(builder, issuer_key)


def _amd_extensions(
    product: Product, tcb: TcbVersion, hwid: bytes | None, csp_id: str | None
) -> list[tuple[x509.ObjectIdentifier, bytes]]:
    turin = product is Product.TURIN
    name = product.title.encode()
    extensions = [
        (OID_STRUCT_VERSION, der_integer(1 if turin else 0)),
        (OID_PRODUCT_NAME, bytes([0x16, len(name)]) + name),
    ]
    components = tcb.components
    for spl in _TURIN_SPL_ORDER if turin else _LEGACY_SPL_ORDER:
        extensions.append((SPL_OIDS[spl], der_integer(components.get(spl, 0))))
    if hwid is not None:
        extensions.append((OID_HWID, hwid))  # raw bytes, as AMD's KDS writes them
    if csp_id is not None:
        extensions.append((OID_CSP_ID, bytes([0x16, len(csp_id)]) + csp_id.encode()))
    return extensions


def issue_endorsement_key(
    *,
    kind: str,
    key: ec.EllipticCurvePrivateKey,
    product: Product,
    tcb: TcbVersion,
    hwid: bytes | None,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    now: datetime,
    csp_id: str | None = None,
) -> x509.Certificate:
    """A VCEK (kind "vcek", with hwID) or VLEK (kind "vlek", with CSP_ID) for one TCB."""
    # AMD's VCEKs carry serial 0, which cryptography's builder refuses; 1 is the nearest.
    builder = (
        x509.CertificateBuilder()
        .subject_name(sim_name("SEV-VCEK" if kind == "vcek" else "SEV-VLEK"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + _LEAF_LIFETIME)
    )
    for oid, value in _amd_extensions(product, tcb, hwid, csp_id):
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    return _sign(builder, issuer_key)
