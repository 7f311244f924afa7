"""ATTESTATION_REPORT parsing and serialisation: real vectors, every error, and round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.errors import ErrorCode
from guestagent.snp.errors import BadReportError
from guestagent.snp.fields import Product, SigningKey, TcbLayout
from guestagent.snp.report import (
    REPORT_SIZE,
    RESERVED_RANGES,
    AttestationReport,
    parse_report,
)


def test_vectors_round_trip_byte_exactly(vector_case):
    report = parse_report(vector_case.report)
    assert report.serialize() == vector_case.report
    assert report.signed_bytes() == vector_case.report[:0x2A0]


def test_trustee_vector_fields(snp_vectors):
    report = parse_report((snp_vectors / "trustee/test-report.bin").read_bytes())
    assert report.version == 2
    assert report.guest_svn == 4
    assert report.policy == 0x3001F
    assert report.guest_policy.smt and not report.guest_policy.debug
    assert report.guest_policy.abi_minor == 0x1F
    assert report.family_id == b"\x01" + bytes(15)
    assert report.image_id == b"\x02" + bytes(15)
    assert report.signature_algo == 1
    assert report.signer.signing_key is SigningKey.VCEK
    assert report.platform.smt_enabled
    assert report.reported_tcb == 0x7308000000000003
    tcb = report.tcb("reported_tcb")
    assert tcb.layout is TcbLayout.LEGACY
    assert tcb.components == {"bl_spl": 3, "tee_spl": 0, "snp_spl": 8, "ucode_spl": 115}
    assert report.current_tcb == 0xCE08000000000003
    assert (report.current_major, report.current_minor, report.current_build) == (1, 52, 4)
    assert report.report_id_ma == b"\xff" * 32
    assert report.chip_id.hex().startswith("c38427a30d4c7af9")
    assert report.host_data == bytes(32)
    assert report.product is None  # v2 carries no CPUID fields


def test_go_sev_guest_vector_is_a_debug_policy(snp_vectors):
    report = parse_report((snp_vectors / "go-sev-guest/attestation.bin").read_bytes())
    assert report.policy == 0xB0000
    assert report.guest_policy.debug
    assert report.report_data[:5] == bytes([1, 2, 3, 4, 5])


def test_to_json_uses_spec_names_and_lowercase_hex(snp_vectors):
    data = (snp_vectors / "trustee/test-report.bin").read_bytes()
    decoded = parse_report(data).to_json()
    expected_names = (
        "version",
        "guest_svn",
        "policy",
        "family_id",
        "image_id",
        "vmpl",
        "signature_algo",
        "current_tcb",
        "platform_info",
        "signer_info",
        "report_data",
        "measurement",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "report_id",
        "report_id_ma",
        "reported_tcb",
        "cpuid_fam_id",
        "cpuid_mod_id",
        "cpuid_step",
        "chip_id",
        "committed_tcb",
        "current_build",
        "current_minor",
        "current_major",
        "committed_build",
        "committed_minor",
        "committed_major",
        "launch_tcb",
        "launch_mit_vector",
        "current_mit_vector",
        "signature",
    )
    assert set(expected_names) <= set(decoded)
    assert decoded["measurement"] == data[0x90:0xC0].hex()
    assert decoded["host_data"] == "00" * 32
    assert decoded["report_data"] == data[0x50:0x90].hex()
    assert decoded["signature"]["r"] == data[0x2A0:0x2E8].hex()
    assert decoded["signature"]["s"] == data[0x2E8:0x330].hex()
    assert decoded["reported_tcb"]["snp_spl"] == 8
    assert decoded["policy"]["debug"] is False
    assert decoded["version"] == 2


@pytest.mark.parametrize("size", [0, 1, REPORT_SIZE - 1, REPORT_SIZE + 1, 4000])
def test_wrong_size_is_a_clear_error(size):
    with pytest.raises(BadReportError, match=f"must be {REPORT_SIZE} bytes, got {size}") as err:
        parse_report(bytes(size))
    assert err.value.code is ErrorCode.SNP_BAD_REPORT


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unknown_version_is_refused(snp_vectors, version):
    data = bytearray((snp_vectors / "trustee/test-report.bin").read_bytes())
    struct.pack_into("<I", data, 0, version)
    with pytest.raises(BadReportError, match=f"unsupported attestation report version {version}"):
        parse_report(bytes(data))


@pytest.mark.parametrize(("start", "end"), RESERVED_RANGES)
def test_every_reserved_byte_must_be_zero(snp_vectors, start, end):
    original = (snp_vectors / "trustee/test-report.bin").read_bytes()
    for offset in range(start, end):
        data = bytearray(original)
        data[offset] = 0x01
        with pytest.raises(BadReportError, match=f"offset 0x{offset:03x} must be zero"):
            parse_report(bytes(data))


@pytest.mark.parametrize("offset", [0x188, 0x189, 0x18A, 0x1F8, 0x200])
def test_fields_reserved_in_version_2(snp_vectors, offset):
    data = bytearray((snp_vectors / "trustee/test-report.bin").read_bytes())
    data[offset] = 0x19
    with pytest.raises(BadReportError, match="reserved in version 2"):
        parse_report(bytes(data))
    struct.pack_into("<I", data, 0, 5)  # the same bytes are fields in version 5
    assert parse_report(bytes(data)).serialize() == bytes(data)


def test_mitigation_vectors_are_reserved_in_version_3():
    report = AttestationReport(version=5, launch_mit_vector=7, current_mit_vector=9)
    data = bytearray(report.serialize())
    assert parse_report(bytes(data)).current_mit_vector == 9
    struct.pack_into("<I", data, 0, 3)
    with pytest.raises(BadReportError, match="launch_mit_vector is reserved in version 3"):
        parse_report(bytes(data))


@pytest.mark.parametrize(
    ("signer_info", "message"),
    [(1 << 5, "reserved bits"), (1 << 31, "reserved bits"), (2 << 2, "SIGNING_KEY 2 is reserved")],
)
def test_signer_info_reserved_values(signer_info, message):
    data = bytearray(AttestationReport(version=3).serialize())
    struct.pack_into("<I", data, 0x48, signer_info)
    with pytest.raises(BadReportError, match=message):
        parse_report(bytes(data))


def test_turin_report_decodes_turin_tcb_layout():
    raw_tcb = 0x0900000003010101  # ucode 9, snp 3, tee 1, bl 1, fmc 1
    report = AttestationReport(
        version=3, cpuid_fam_id=0x1A, cpuid_mod_id=0x02, reported_tcb=raw_tcb
    )
    assert report.product is Product.TURIN
    tcb = report.tcb("reported_tcb")
    assert tcb.layout is TcbLayout.TURIN
    assert tcb.components == {"fmc_spl": 1, "bl_spl": 1, "tee_spl": 1, "snp_spl": 3, "ucode_spl": 9}
    # The same bytes read as Milan would be wrong: the layout matters.
    assert report.tcb("reported_tcb", Product.MILAN).components["snp_spl"] == 0


def test_constructor_rejects_wrong_field_sizes():
    with pytest.raises(BadReportError, match="host_data must be 32 bytes"):
        AttestationReport(version=2, host_data=bytes(31))
    with pytest.raises(BadReportError, match=r"vmpl .* out of range"):
        AttestationReport(version=2, vmpl=1 << 32)


def test_non_bytes_input_is_refused():
    with pytest.raises(BadReportError, match="must be bytes"):
        parse_report("not bytes")  # type: ignore[arg-type]


def _bytes(size):
    return st.binary(min_size=size, max_size=size)


u8, u32, u64 = (st.integers(0, (1 << bits) - 1) for bits in (8, 32, 64))


@st.composite
def valid_reports(draw):
    version = draw(st.sampled_from([2, 3, 5]))
    v3 = version >= 3
    v5 = version == 5
    return AttestationReport(
        version=version,
        guest_svn=draw(u32),
        policy=draw(u64),
        family_id=draw(_bytes(16)),
        image_id=draw(_bytes(16)),
        vmpl=draw(u32),
        signature_algo=draw(u32),
        current_tcb=draw(u64),
        platform_info=draw(u64),
        signer_info=draw(st.sampled_from([0, 1, 2, 3])) | draw(st.sampled_from([0, 1, 7])) << 2,
        report_data=draw(_bytes(64)),
        measurement=draw(_bytes(48)),
        host_data=draw(_bytes(32)),
        id_key_digest=draw(_bytes(48)),
        author_key_digest=draw(_bytes(48)),
        report_id=draw(_bytes(32)),
        report_id_ma=draw(_bytes(32)),
        reported_tcb=draw(u64),
        cpuid_fam_id=draw(u8) if v3 else 0,
        cpuid_mod_id=draw(u8) if v3 else 0,
        cpuid_step=draw(u8) if v3 else 0,
        chip_id=draw(_bytes(64)),
        committed_tcb=draw(u64),
        current_build=draw(u8),
        current_minor=draw(u8),
        current_major=draw(u8),
        committed_build=draw(u8),
        committed_minor=draw(u8),
        committed_major=draw(u8),
        launch_tcb=draw(u64),
        launch_mit_vector=draw(u64) if v5 else 0,
        current_mit_vector=draw(u64) if v5 else 0,
        signature_r=draw(_bytes(72)),
        signature_s=draw(_bytes(72)),
    )


@settings(max_examples=200, deadline=None)
@given(valid_reports())
def test_any_valid_report_round_trips(report):
    data = report.serialize()
    assert len(data) == REPORT_SIZE
    parsed = parse_report(data)
    assert parsed == report
    assert parsed.serialize() == data
    assert parsed.to_json()["version"] == report.version


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE))
def test_arbitrary_bytes_parse_exactly_or_fail_cleanly(data):
    try:
        report = parse_report(data)
    except BadReportError:
        return
    assert report.serialize() == data
