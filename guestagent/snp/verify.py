"""Verify an attestation report for a relying party (pure: all inputs are passed in).

`verify_report` runs every check and returns a `VerificationResult` listing each one; call
`raise_for_failure()` on it (or `verify_report_or_raise`) to fail closed. Nothing here reads
files, the network or the clock unless `now` is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from guestagent.records import field, record
from guestagent.snp.amdcerts import AmdExtensions, amd_extensions
from guestagent.snp.chain import leaf_kind, verify_chain
from guestagent.snp.errors import BadReportError
from guestagent.snp.fields import Product, SigningKey, product_from_name
from guestagent.snp.report import ECDSA_P384_SHA384, AttestationReport, parse_report
from guestagent.snp.result import Check, VerificationResult, compare, fail, ok

__all__ = ["VerifyOptions", "verify_report", "verify_report_or_raise", "verify_signature"]


@record(kw_only=True)
class VerifyOptions:
    """What the relying party requires. `None` means "not checked"."""

    product: Product | None = None  # default: the leaf certificate's product-name extension
    trusted_roots: tuple[x509.Certificate, ...] = ()  # replaces the AMD pins (e.g. simulator)
    now: datetime | None = None  # default: the current time
    expected_measurement: bytes | None = None
    expected_host_data: bytes | None = None
    expected_report_data: bytes | None = None
    expected_vmpl: int | None = None
    min_tcb: Mapping[str, int] = field(default_factory=dict)  # e.g. {"snp_spl": 8}
    min_guest_svn: int | None = None
    allow_debug: bool = False
    allow_migration_agent: bool = False
    allow_smt: bool = True


def verify_signature(report: AttestationReport, leaf: x509.Certificate) -> Check:
    """ECDSA P-384/SHA-384 over bytes [0, 0x2A0) with R and S read little-endian."""
    name = "report.signature"
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return fail(name, "EC P-384 key in the certificate", type(key).__name__)
    r, s = report.signature_rs
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes(), ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        return fail(name, "ECDSA P-384 signature by the certificate's key", "does not verify")
    return ok(name, "ECDSA P-384/SHA-384 over bytes [0x000, 0x2a0)")


def _product(options: VerifyOptions, ext: AmdExtensions) -> tuple[Product | None, list[Check]]:
    if ext.product_name is None:
        if options.product is None:
            return None, [fail("leaf.product", "a product-name extension", "none")]
        return options.product, []
    try:
        named = product_from_name(ext.product_name)
    except ValueError:
        return options.product, [fail("leaf.product", "Milan, Genoa or Turin", ext.product_name)]
    if options.product is not None and options.product is not named:
        return options.product, [fail("leaf.product", options.product.title, ext.product_name)]
    return named, [ok("leaf.product", ext.product_name)]


def _report_product(report: AttestationReport, product: Product) -> list[Check]:
    found = report.product
    if report.version < 3:
        return []  # v2 does not carry CPUID fields
    if found is None:
        cpuid = f"family 0x{report.cpuid_fam_id:02x} model 0x{report.cpuid_mod_id:02x}"
        return [fail("report.product", product.title, cpuid)]
    return [compare("report.product", product.title, found.title)]


def _signer(report: AttestationReport, kind: str | None) -> Check:
    expected = SigningKey.VLEK if kind == "vlek" else SigningKey.VCEK
    actual = report.signer.signing_key
    return compare("report.signing_key", expected.name, actual.name)


def _tcb_checks(report: AttestationReport, ext: AmdExtensions, product: Product) -> list[Check]:
    tcb = report.tcb("reported_tcb", product)
    checks = []
    for name, value in tcb.components.items():
        cert_value = ext.spls.get(name)
        checks.append(
            compare(f"tcb.{name}", cert_value, value, "reported_tcb vs certificate")
            if cert_value is not None
            else fail(f"tcb.{name}", "a certificate SPL extension", "missing")
        )
    return checks


def _chip_id(report: AttestationReport, ext: AmdExtensions, kind: str | None) -> list[Check]:
    if kind == "vlek":
        return []  # a VLEK is not tied to one chip; its reports carry no usable chip id
    if report.signer.mask_chip_key:
        return [ok("report.chip_id", "masked by the guest (MASK_CHIP_KEY): not compared")]
    if ext.hwid is None:
        return [fail("report.chip_id", "a hwID extension in the VCEK", "none")]
    return [compare("report.chip_id", ext.hwid, report.chip_id[: len(ext.hwid)], "VCEK hwID")]


def _policy_checks(report: AttestationReport, options: VerifyOptions) -> list[Check]:
    policy = report.guest_policy
    checks = []
    if not options.allow_debug:
        checks.append(compare("policy.debug", False, policy.debug, "debug is not allowed"))
    if not options.allow_migration_agent:
        checks.append(compare("policy.migrate_ma", False, policy.migrate_ma))
    if not options.allow_smt:
        checks.append(compare("policy.smt", False, policy.smt, "SMT must not be allowed"))
        checks.append(compare("platform.smt_en", False, report.platform.smt_enabled))
    return checks


def _minimum_checks(
    report: AttestationReport, options: VerifyOptions, product: Product
) -> list[Check]:
    checks = []
    tcb = report.tcb("reported_tcb", product)
    for name, minimum in options.min_tcb.items():
        if name not in tcb.components:
            checks.append(fail(f"min_tcb.{name}", f"a {tcb.layout.value} component", name))
            continue
        actual = tcb.spl(name)
        passed = actual >= minimum
        checks.append(Check(f"min_tcb.{name}", passed, f">= {minimum}", str(actual)))
    if options.min_guest_svn is not None:
        passed = report.guest_svn >= options.min_guest_svn
        checks.append(
            Check("min_guest_svn", passed, f">= {options.min_guest_svn}", str(report.guest_svn))
        )
    return checks


def _expectations(report: AttestationReport, options: VerifyOptions) -> list[Check]:
    wanted = {
        "measurement": options.expected_measurement,
        "host_data": options.expected_host_data,
        "report_data": options.expected_report_data,
        "vmpl": options.expected_vmpl,
    }
    return [
        compare(f"report.{name}", value, getattr(report, name))
        for name, value in wanted.items()
        if value is not None
    ]


def verify_report(
    report: bytes | AttestationReport,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    options: VerifyOptions | None = None,
) -> VerificationResult:
    """Run every check; the result lists each one with expected and actual values."""
    options = options or VerifyOptions()
    if not isinstance(report, AttestationReport):
        try:
            report = parse_report(report)
        except BadReportError as exc:
            return VerificationResult((fail("report.parse", "a valid report", exc.message),), None)
    checks: list[Check] = [ok("report.parse", f"version {report.version}")]
    checks.append(compare("report.signature_algo", ECDSA_P384_SHA384, report.signature_algo))
    try:
        ext = amd_extensions(leaf)
    except BadReportError as exc:
        checks.append(fail("leaf.extensions", "well-formed AMD extensions", exc.message))
        return VerificationResult(tuple(checks), report)
    product, product_checks = _product(options, ext)
    checks += product_checks
    now = options.now or datetime.now(UTC)
    checks += verify_chain(
        leaf, chain, product=product, trusted_roots=options.trusted_roots, now=now
    )
    kind = leaf_kind(leaf)
    checks.append(_signer(report, kind))
    checks.append(verify_signature(report, leaf))
    if product is not None:
        checks += _report_product(report, product)
        checks += _tcb_checks(report, ext, product)
        checks += _minimum_checks(report, options, product)
    checks += _chip_id(report, ext, kind)
    checks += _policy_checks(report, options)
    checks += _expectations(report, options)
    return VerificationResult(tuple(checks), report)


def verify_report_or_raise(
    report: bytes | AttestationReport,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    options: VerifyOptions | None = None,
) -> VerificationResult:
    """Like verify_report, but raise VerificationError (snp.verify_failed) on any failure."""
    result = verify_report(report, leaf, chain, options)
    result.raise_for_failure()
    return result
