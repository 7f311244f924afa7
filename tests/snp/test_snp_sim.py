"""The simulator: reports verify with its root trusted, fail against AMD, persist, derive keys."""

from __future__ import annotations

import os
import stat

import pytest

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.snp.amdcerts import amd_extensions, load_certificate
from guestagent.snp.backend import DerivedKeyRequest, GuestField, SnpBackend
from guestagent.snp.errors import SnpFirmwareError, SnpUnavailableError
from guestagent.snp.fields import GuestPolicy, Product, SigningKey, TcbLayout
from guestagent.snp.report import parse_report
from guestagent.snp.sim import DEFAULT_TCB, SimBackend, SimConfig
from guestagent.snp.verify import VerifyOptions, verify_report

NONCE = bytes(range(64))


def _certs(backend):
    table = backend.get_certificates()
    leaf = load_certificate(table.vcek or table.vlek)
    return leaf, [load_certificate(table.ask), load_certificate(table.ark)]


def _verify(backend, raw, trust_sim=True, **options):
    leaf, chain = _certs(backend)
    roots = (chain[1],) if trust_sim else ()
    return verify_report(raw, leaf, chain, VerifyOptions(trusted_roots=roots, **options))


def test_sim_is_an_snp_backend_that_says_it_is_simulated(milan_state):
    backend = SimBackend(milan_state)
    assert isinstance(backend, SnpBackend)
    assert backend.simulated is True
    described = backend.describe()
    assert described["name"] == "sim" and described["simulated"] is True
    assert "SIMULATED" in described["warning"]


def test_sim_report_verifies_with_sim_root_and_fails_with_amd_roots(milan_state):
    host_data = bytes.fromhex("28603a3e" * 8)
    backend = SimBackend(milan_state, SimConfig(host_data=host_data))
    raw = backend.get_report(NONCE)
    trusted = _verify(backend, raw, expected_host_data=host_data, expected_report_data=NONCE)
    assert trusted.ok, [c.describe() for c in trusted.failures]
    amd = _verify(backend, raw, trust_sim=False)
    assert [c.name for c in amd.failures] == ["chain.root_pinned"]
    assert amd.check("chain.root_pinned").expected == "AMD ARK-Milan"


def test_sim_report_fields(milan_state):
    config = SimConfig(host_data=b"\x42" * 32, guest_svn=3, policy=GuestPolicy.build().raw)
    backend = SimBackend(milan_state, config)
    report = parse_report(backend.get_report(NONCE, vmpl=2))
    assert report.version == 3
    assert report.host_data == b"\x42" * 32
    assert report.report_data == NONCE and report.vmpl == 2 and report.guest_svn == 3
    assert report.product is Product.MILAN
    assert report.tcb("reported_tcb").components == DEFAULT_TCB[Product.MILAN]
    assert report.chip_id == backend.state.chip_id
    assert report.signer.signing_key is SigningKey.VCEK
    assert not report.guest_policy.smt


def test_vcek_extensions_describe_the_simulated_chip(milan_state):
    backend = SimBackend(milan_state)
    ext = amd_extensions(_certs(backend)[0])
    assert ext.product_name == "Milan" and ext.struct_version == 0
    assert ext.hwid == backend.state.chip_id
    assert {k: v for k, v in ext.spls.items() if not k.startswith("spl")} == DEFAULT_TCB[
        Product.MILAN
    ]


@pytest.mark.parametrize("version", [2, 3, 5])
@pytest.mark.parametrize("signing_key", ["vcek", "vlek"])
def test_turin_reports_of_every_version_verify(turin_state, version, signing_key):
    backend = SimBackend(turin_state, SimConfig(report_version=version, signing_key=signing_key))
    raw = backend.get_report(NONCE)
    result = _verify(backend, raw, min_tcb={"fmc_spl": 1, "snp_spl": 3})
    assert result.ok, [c.describe() for c in result.failures]
    report = parse_report(raw)
    assert report.version == version
    assert report.tcb("reported_tcb", Product.TURIN).layout is TcbLayout.TURIN
    if signing_key == "vlek":
        assert report.chip_id == bytes(64)
        assert report.signer.signing_key is SigningKey.VLEK
        assert amd_extensions(_certs(backend)[0]).csp_id
    else:
        assert amd_extensions(_certs(backend)[0]).hwid == backend.state.chip_id[:8]


def test_reports_verify_across_restarts(milan_state):
    first = SimBackend(milan_state)
    raw = first.get_report(NONCE)
    again = SimBackend(milan_state)  # a new process: same directory, product read back
    assert again.product is Product.MILAN and again.state.chip_id == first.state.chip_id
    assert again.report_id != first.report_id  # a new launch
    assert _verify(again, raw).ok
    assert _verify(again, again.get_report(NONCE)).ok
    assert stat.S_IMODE(os.stat(milan_state).st_mode) == 0o700
    for name in ("root_secret", "ark.key", "ask.key", "chip.json"):
        assert stat.S_IMODE(os.stat(milan_state / name).st_mode) == 0o600
    with pytest.raises(InvalidArgumentError, match="Milan chip, not Genoa"):
        SimBackend(milan_state, SimConfig(product=Product.GENOA))


def test_state_directory_with_loose_permissions_is_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(SnpUnavailableError, match="must be 0700"):
        SimBackend(loose)


def test_a_different_tcb_gets_a_different_vcek(milan_state):
    low = SimBackend(milan_state)
    high = SimBackend(milan_state, SimConfig(tcb=0x7409000000000004))
    raw = high.get_report(NONCE)
    assert _verify(high, raw).ok
    leaf_low, chain = _certs(low)
    crossed = verify_report(raw, leaf_low, chain, VerifyOptions(trusted_roots=(chain[1],)))
    assert not crossed.check("report.signature").passed
    assert not crossed.check("tcb.snp_spl").passed


def test_vmpl_more_privileged_than_the_guest_is_refused(milan_state):
    backend = SimBackend(milan_state, SimConfig(guest_vmpl=1))
    with pytest.raises(SnpFirmwareError, match="INVALID_PARAM") as err:
        backend.get_report(NONCE, vmpl=0)
    assert err.value.fw_error == 0x16 and err.value.code is ErrorCode.SNP_FIRMWARE
    assert parse_report(backend.get_report(NONCE, vmpl=1)).vmpl == 1


def test_report_data_must_be_64_bytes(milan_state):
    with pytest.raises(InvalidArgumentError, match="exactly 64 bytes"):
        SimBackend(milan_state).get_report(b"short")


ALL_FIELDS = int(GuestField.POLICY | GuestField.MEASUREMENT | GuestField.IMAGE_ID)


def test_derived_keys_are_stable_and_bound_to_selected_fields(milan_state):
    request = DerivedKeyRequest(guest_field_select=ALL_FIELDS)
    base = SimBackend(milan_state).get_derived_key(request)
    assert len(base) == 32
    assert SimBackend(milan_state).get_derived_key(request) == base  # across "restarts"
    other_policy = SimBackend(milan_state, SimConfig(policy=GuestPolicy.build().raw))
    other_measurement = SimBackend(milan_state, SimConfig(measurement=b"\x01" * 48))
    assert other_policy.get_derived_key(request) != base
    assert other_measurement.get_derived_key(request) != base
    # Fields that are not selected do not change the key.
    only_policy = DerivedKeyRequest(guest_field_select=int(GuestField.POLICY))
    assert other_measurement.get_derived_key(only_policy) == SimBackend(
        milan_state
    ).get_derived_key(only_policy)
    vmrk = DerivedKeyRequest(root_key_select=1, guest_field_select=ALL_FIELDS)
    assert SimBackend(milan_state).get_derived_key(vmrk) != base


def test_derived_keys_differ_between_chips(milan_state, turin_state):
    request = DerivedKeyRequest(guest_field_select=ALL_FIELDS)
    milan_key = SimBackend(milan_state).get_derived_key(request)
    assert milan_key != SimBackend(turin_state).get_derived_key(request)


@pytest.mark.parametrize(
    "request_fields",
    [
        dict(guest_field_select=int(GuestField.GUEST_SVN), guest_svn=1),
        dict(guest_field_select=int(GuestField.TCB_VERSION), tcb_version=0xFF08000000000003),
    ],
)
def test_derived_key_requests_beyond_the_guest_are_refused(milan_state, request_fields):
    with pytest.raises(SnpFirmwareError, match="INVALID_PARAM"):
        SimBackend(milan_state).get_derived_key(DerivedKeyRequest(**request_fields))


def test_derived_key_request_validation():
    with pytest.raises(InvalidArgumentError, match="bits beyond 5"):
        DerivedKeyRequest(guest_field_select=1 << 6)
    with pytest.raises(InvalidArgumentError, match="VMPL"):
        DerivedKeyRequest(vmpl=4)
