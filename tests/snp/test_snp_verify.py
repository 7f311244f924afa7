"""Verification against the real AMD-signed vectors: chains, signatures, tampering, claims."""

from __future__ import annotations

import struct

import pytest
from snp_testutil import VECTOR_TIME, load_case

from guestagent.errors import ErrorCode
from guestagent.records import replace
from guestagent.snp.amdcerts import load_certificate, load_certificates
from guestagent.snp.chain import verify_chain
from guestagent.snp.errors import VerificationError
from guestagent.snp.fields import Product
from guestagent.snp.report import SIGNED_SIZE, parse_report
from guestagent.snp.verify import VerifyOptions, verify_report

OPTIONS = VerifyOptions(now=VECTOR_TIME, allow_debug=True)


def _verify(case, report=None, **changes):
    options = replace(OPTIONS, **changes)
    return verify_report(case.report if report is None else report, case.vcek, case.chain, options)


def test_real_reports_verify(vector_case):
    result = _verify(vector_case)
    assert result.ok, [check.describe() for check in result.failures]
    names = {check.name for check in result.checks}
    assert {"report.signature", "chain.root_pinned", "chain.leaf_signature"} <= names
    assert {"tcb.bl_spl", "tcb.snp_spl", "tcb.ucode_spl", "report.chip_id"} <= names
    result.raise_for_failure()  # does not raise


def test_real_reports_verify_with_product_given(vector_case):
    assert _verify(vector_case, product=Product.MILAN).ok


def test_pinning_the_wrong_product_fails(vector_case):
    result = _verify(vector_case, product=Product.GENOA)
    assert not result.ok
    assert result.check("leaf.product").expected == "Genoa"
    assert result.check("chain.root_pinned").expected == "AMD ARK-Genoa"


def test_every_signed_byte_is_covered(vector_case):
    """Flip each byte of [0, 0x2A0) in turn: every copy must fail verification."""
    survived = []
    for offset in range(SIGNED_SIZE):
        tampered = bytearray(vector_case.report)
        tampered[offset] ^= 0x01
        if _verify(vector_case, bytes(tampered)).ok:
            survived.append(offset)
    assert survived == []


def test_a_flipped_field_fails_the_signature_check(vector_case):
    tampered = bytearray(vector_case.report)
    tampered[0xC0] ^= 0xFF  # HOST_DATA: parses fine, so the signature check must catch it
    result = _verify(vector_case, bytes(tampered))
    assert not result.check("report.signature").passed
    assert result.check("report.parse").passed


@pytest.mark.parametrize("offset", [0x2A0, 0x2D0, 0x2E8, 0x32F])
def test_tampered_signature_fails(vector_case, offset):
    tampered = bytearray(vector_case.report)
    tampered[offset] ^= 0x01
    assert not _verify(vector_case, bytes(tampered)).ok


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_invalid_trustee_vceks_are_rejected(snp_vectors, name):
    case = load_case(snp_vectors, "trustee")
    bad = load_certificate((snp_vectors / "trustee" / name).read_bytes())
    result = verify_report(case.report, bad, case.chain, OPTIONS)
    assert not result.ok
    assert not result.check("chain.leaf_signature").passed
    assert not result.check("report.signature").passed
    assert not result.check("report.chip_id").passed
    with pytest.raises(VerificationError) as err:
        result.raise_for_failure()
    assert err.value.code is ErrorCode.SNP_VERIFY_FAILED
    assert "chain.leaf_signature" in err.value.message


def test_vcek_of_another_chip_is_rejected(snp_vectors):
    trustee = load_case(snp_vectors, "trustee")
    other = load_case(snp_vectors, "go-sev-guest")
    result = verify_report(trustee.report, other.vcek, other.chain, OPTIONS)
    assert result.check("chain.leaf_signature").passed  # a genuine VCEK...
    assert not result.check("report.signature").passed  # ...but not this report's
    chip = result.check("report.chip_id")
    assert not chip.passed and chip.actual == trustee.report[0x1A0:0x1E0].hex()


def test_debug_policy_is_refused_unless_allowed(snp_vectors):
    case = load_case(snp_vectors, "go-sev-guest")
    result = _verify(case, allow_debug=False)
    assert not result.ok
    check = result.check("policy.debug")
    assert (check.expected, check.actual) == ("False", "True")
    assert [c.name for c in result.failures] == ["policy.debug"]


def test_expectations_name_both_values(snp_vectors):
    case = load_case(snp_vectors, "trustee")
    report = parse_report(case.report)
    good = _verify(
        case,
        expected_measurement=report.measurement,
        expected_host_data=bytes(32),
        expected_report_data=report.report_data,
        expected_vmpl=0,
    )
    assert good.ok
    bad = _verify(case, expected_host_data=b"\x11" * 32, expected_measurement=bytes(48))
    failed = {check.name: check for check in bad.failures}
    assert set(failed) == {"report.host_data", "report.measurement"}
    assert failed["report.host_data"].expected == "11" * 32
    assert failed["report.host_data"].actual == "00" * 32
    assert failed["report.measurement"].actual == report.measurement.hex()


def test_minimum_tcb_and_svn(snp_vectors):
    case = load_case(snp_vectors, "trustee")  # reported TCB bl 3, snp 8, ucode 115; svn 4
    assert _verify(case, min_tcb={"bl_spl": 3, "snp_spl": 8, "ucode_spl": 115}).ok
    result = _verify(case, min_tcb={"snp_spl": 9, "ucode_spl": 100}, min_guest_svn=5)
    failed = {check.name: check for check in result.failures}
    assert set(failed) == {"min_tcb.snp_spl", "min_guest_svn"}
    assert (failed["min_tcb.snp_spl"].expected, failed["min_tcb.snp_spl"].actual) == (">= 9", "8")
    assert not _verify(case, min_tcb={"fmc_spl": 1}).ok  # not a Milan component


def test_smt_and_migration_agent_policy(snp_vectors):
    case = load_case(snp_vectors, "trustee")  # policy allows SMT; platform has SMT enabled
    result = _verify(case, allow_smt=False)
    assert {c.name for c in result.failures} == {"policy.smt", "platform.smt_en"}
    tampered = bytearray(case.report)
    struct.pack_into("<Q", tampered, 8, 0x3001F | 1 << 18)
    result = _verify(case, bytes(tampered), allow_migration_agent=False)
    assert not result.check("policy.migrate_ma").passed


def test_chain_missing_the_root_fails_structure(vector_case):
    result = verify_report(vector_case.report, vector_case.vcek, vector_case.chain[:1], OPTIONS)
    check = result.check("chain.structure")
    assert not check.passed and "SEV-Milan" in check.actual


def test_expired_certificates_fail(vector_case):
    late = VECTOR_TIME.replace(year=2031)
    result = _verify(vector_case, now=late)
    assert [check.name for check in result.failures] == ["chain.validity"]


def test_unparseable_report_is_a_failed_check(vector_case):
    result = _verify(vector_case, vector_case.report[:-1])
    assert not result.ok
    assert result.failures[0].name == "report.parse"


def test_turin_vcek_chains_to_pinned_turin_root(snp_vectors):
    vcek = load_certificate((snp_vectors / "virtee-sev/vcek_turin.der").read_bytes())
    chain = load_certificates((snp_vectors / "virtee-sev/cert_chain_turin").read_bytes())
    checks = verify_chain(vcek, chain, product=Product.TURIN, now=VECTOR_TIME)
    assert all(check.passed for check in checks), [c.describe() for c in checks]
    wrong = verify_chain(vcek, chain, product=Product.MILAN, now=VECTOR_TIME)
    assert not next(c for c in wrong if c.name == "chain.root_pinned").passed


@pytest.mark.parametrize(
    ("chain_file", "product"),
    [
        ("go-sev-guest/ask_ark_milan.pem", Product.MILAN),
        ("go-sev-guest/ask_ark_genoa.pem", Product.GENOA),
        ("go-sev-guest/ask_ark_turin_vcek.pem", Product.TURIN),
        ("go-sev-guest/ask_ark_milan_vlek.pem", Product.MILAN),
        ("go-sev-guest/ask_ark_genoa_vlek.pem", Product.GENOA),
        ("go-sev-guest/ask_ark_turin_vlek.pem", Product.TURIN),
    ],
)
def test_published_amd_chains_match_the_embedded_roots(snp_vectors, chain_file, product):
    from guestagent.snp.amd_roots import AMD_ARK_PEM

    intermediate, ark = load_certificates((snp_vectors / chain_file).read_bytes())
    assert ark == load_certificate(AMD_ARK_PEM[product])
    assert intermediate.issuer == ark.subject
