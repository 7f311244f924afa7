"""The AMD certificate chain: VCEK/VLEK -> ASK/ASVK -> ARK, ARK pinned per product.

Pure: every input (certificates, trusted roots, the time) is passed in. Each link is checked
with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48, whatever the certificate claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from guestagent.snp.amd_roots import AMD_ARK_PEM
from guestagent.snp.amdcerts import load_certificate
from guestagent.snp.fields import Product
from guestagent.snp.result import Check, fail, ok

__all__ = ["AMD_PSS", "LeafKind", "common_name", "leaf_kind", "verify_chain"]

AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
LeafKind = str  # "vcek" or "vlek"


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def leaf_kind(cert: x509.Certificate) -> LeafKind | None:
    return {"SEV-VCEK": "vcek", "SEV-VLEK": "vlek"}.get(common_name(cert))


def _pss_check(name: str, child: x509.Certificate, parent: x509.Certificate) -> Check:
    expected = f"RSASSA-PSS/SHA-384 signature by {common_name(parent)!r}"
    key = parent.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return fail(name, expected, f"issuer key is {type(key).__name__}, not RSA")
    if not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        return fail(name, expected, f"signature hash {child.signature_hash_algorithm}")
    if child.issuer != parent.subject:
        return fail(name, expected, f"issuer {child.issuer.rfc4514_string()!r}")
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())
    except InvalidSignature:
        return fail(name, expected, "signature does not verify")
    return ok(name, f"{common_name(child)!r} signed by {common_name(parent)!r}")


def _validity(certs: Sequence[x509.Certificate], now: datetime) -> Check:
    for cert in certs:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not start <= now <= end:
            return fail(
                "chain.validity",
                f"{common_name(cert)!r} valid {start.isoformat()}..{end.isoformat()}",
                f"time {now.isoformat()}",
            )
    return ok("chain.validity", f"all certificates valid at {now.isoformat()}")


def _find_issuer(
    child: x509.Certificate, pool: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    return next((cert for cert in pool if cert.subject == child.issuer), None)


def _pinned_roots(
    product: Product | None, trusted_roots: Sequence[x509.Certificate]
) -> tuple[list[bytes], str]:
    if trusted_roots:
        return [_spki(root) for root in trusted_roots], "an explicitly trusted root"
    if product is None:
        return [], "AMD ARK for an unknown product"
    return [_spki(load_certificate(AMD_ARK_PEM[product]))], f"AMD ARK-{product.title}"


def verify_chain(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    *,
    product: Product | None,
    trusted_roots: Sequence[x509.Certificate] = (),
    now: datetime,
) -> list[Check]:
    """Checks for leaf -> intermediate -> root, and that the root is pinned (AMD or explicit)."""
    checks: list[Check] = []
    kind = leaf_kind(leaf)
    if kind is None:
        checks.append(fail("leaf.kind", "CN=SEV-VCEK or CN=SEV-VLEK", repr(common_name(leaf))))
    else:
        checks.append(ok("leaf.kind", kind))
    leaf_key = leaf.public_key()
    if isinstance(leaf_key, ec.EllipticCurvePublicKey) and leaf_key.curve.name == "secp384r1":
        checks.append(ok("leaf.key", "EC P-384"))
    else:
        checks.append(fail("leaf.key", "EC P-384 public key", type(leaf_key).__name__))
    intermediate = _find_issuer(leaf, chain)
    root = _find_issuer(intermediate, chain) if intermediate is not None else None
    if intermediate is None or root is None or root.subject != root.issuer:
        found = ", ".join(repr(common_name(cert)) for cert in chain) or "nothing"
        checks.append(
            fail(
                "chain.structure",
                f"issuer of {common_name(leaf)!r} and a self-signed root in the chain",
                found,
            )
        )
        return checks
    checks.append(ok("chain.structure", f"{common_name(intermediate)!r} <- {common_name(root)!r}"))
    pins, pin_name = _pinned_roots(product, trusted_roots)
    if _spki(root) in pins:
        checks.append(ok("chain.root_pinned", f"root key is {pin_name}"))
    else:
        checks.append(
            fail("chain.root_pinned", pin_name, f"untrusted root {common_name(root)!r} key")
        )
    checks.append(_pss_check("chain.root_signature", root, root))
    checks.append(_pss_check("chain.intermediate_signature", intermediate, root))
    checks.append(_pss_check("chain.leaf_signature", leaf, intermediate))
    checks.append(_validity([leaf, intermediate, root], now))
    return checks
