"""AMD VCEK extensions, certificate loading, and the GHCB certificate table."""

from __future__ import annotations

import uuid
import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from guestagent.errors import ErrorCode
from guestagent.snp.amdcerts import amd_extensions, der_integer, load_certificate
from guestagent.snp.cert_table import (
    ARK_GUID,
    ASK_GUID,
    ENTRY_SIZE,
    VCEK_GUID,
    VLEK_GUID,
    CertTable,
)
from guestagent.snp.errors import BadReportError


def test_vcek_serial_zero_loads_without_warning(snp_vectors):
    data = (snp_vectors / "trustee/test-vcek.der").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, including the serial-0 one, fails
        cert = load_certificate(data)
    # Reading the serial itself still warns: nothing in guestagent reads it.
    with pytest.warns(CryptographyDeprecationWarning):
        assert cert.serial_number == 0


def test_milan_vcek_extensions(snp_vectors):
    ext = amd_extensions(load_certificate((snp_vectors / "go-sev-guest/vcek.testcer").read_bytes()))
    assert ext.struct_version == 0
    assert ext.product_name == "Milan-B0"
    assert ext.spls["bl_spl"] == 2 and ext.spls["snp_spl"] == 5 and ext.spls["ucode_spl"] == 68
    assert ext.spls["spl4"] == 0 and "fmc_spl" not in ext.spls
    report = (snp_vectors / "go-sev-guest/attestation.bin").read_bytes()
    assert ext.hwid == report[0x1A0:0x1E0]
    assert ext.csp_id is None


def test_turin_vcek_extensions(snp_vectors):
    ext = amd_extensions(load_certificate((snp_vectors / "virtee-sev/vcek_turin.der").read_bytes()))
    assert ext.struct_version == 1
    assert ext.product_name == "Turin"
    assert ext.spls["fmc_spl"] == 0 and ext.spls["ucode_spl"] == 9
    assert "spl4" not in ext.spls
    assert len(ext.hwid) == 8


def test_der_wrapped_hwid_is_unwrapped(snp_vectors):
    ext = amd_extensions(
        load_certificate((snp_vectors / "trustee/test-vcek-invalid-new.der").read_bytes())
    )
    assert ext.hwid == bytes(range(64))


@pytest.mark.parametrize(("value", "encoded"), [(0, "020100"), (115, "020173"), (217, "020200d9")])
def test_der_integer(value, encoded):
    assert der_integer(value).hex() == encoded


def test_garbage_certificate_is_a_clear_error():
    with pytest.raises(BadReportError, match=r"not a valid X\.509 certificate"):
        load_certificate(b"\x30\x03\x02\x01\x00")


def test_guids_use_rfc4122_byte_order():
    assert VCEK_GUID.bytes.hex() == "63da758de6644564adc5f4b93be8accd"
    assert ARK_GUID.bytes[:4] == bytes.fromhex("c0b406a4")


def test_cert_table_round_trip_and_layout():
    table = CertTable({VCEK_GUID: b"vcek-der", ASK_GUID: b"ask", ARK_GUID: b"ark-der!"})
    data = table.build()
    assert len(data) == 4 * ENTRY_SIZE + 8 + 3 + 8
    assert data[:16] == VCEK_GUID.bytes
    assert int.from_bytes(data[16:20], "little") == 4 * ENTRY_SIZE  # first cert after the table
    assert int.from_bytes(data[20:24], "little") == 8
    assert data[3 * ENTRY_SIZE : 4 * ENTRY_SIZE] == bytes(ENTRY_SIZE)  # the terminator
    parsed = CertTable.parse(data + bytes(4096))  # page padding is allowed
    assert parsed == table
    assert (parsed.vcek, parsed.ask, parsed.ark, parsed.vlek) == (
        b"vcek-der",
        b"ask",
        b"ark-der!",
        None,
    )
    assert parsed.names() == ["vcek", "ask", "ark"]


def test_cert_table_keeps_unknown_guids():
    other = uuid.UUID("00000000-1111-2222-3333-444444444444")
    table = CertTable({VLEK_GUID: b"vlek", other: b"crl"})
    assert CertTable.parse(table.build()).get(other) == b"crl"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d[:16] + (24).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"x",
            "no all-zero terminating entry",
        ),
        (lambda d: d[:20] + (10**6).to_bytes(4, "little") + d[24:], "outside"),
        (lambda d: d[:16] + (4).to_bytes(4, "little") + d[20:], "outside"),
    ],
)
def test_malformed_cert_tables(mutate, message):
    data = CertTable({VCEK_GUID: b"x" * 10, ASK_GUID: b"y" * 10}).build()
    with pytest.raises(BadReportError, match=message) as err:
        CertTable.parse(mutate(data))
    assert err.value.code is ErrorCode.SNP_BAD_REPORT


def test_duplicate_guid_is_refused():
    data = bytearray(CertTable({VCEK_GUID: b"a", ASK_GUID: b"b"}).build())
    data[ENTRY_SIZE : ENTRY_SIZE + 16] = VCEK_GUID.bytes
    with pytest.raises(BadReportError, match="twice"):
        CertTable.parse(bytes(data))
