"""The /dev/sev-guest backend against the kernel UAPI: struct layouts, ioctl numbers, and a fake
driver (the ioctl seam) that reads requests through their pointers like copy_from_user."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.snp import uapi
from guestagent.snp.backend import DerivedKeyRequest, GuestField
from guestagent.snp.cert_table import VCEK_GUID, CertTable
from guestagent.snp.errors import (
    BadReportError,
    SnpBusyError,
    SnpFirmwareError,
    SnpUnavailableError,
)
from guestagent.snp.report import parse_report
from guestagent.snp.sevguest import RETRY_DELAYS, SevGuestBackend
from guestagent.snp.sim import SimBackend

# anchors.md §5.1: x86_64 layouts of include/uapi/linux/sev-guest.h.
UAPI_LAYOUT = {
    uapi.SnpReportReq: (96, {"user_data": 0, "vmpl": 64, "rsvd": 68}),
    uapi.SnpReportResp: (4000, {"data": 0}),
    uapi.SnpDerivedKeyReq: (
        32,
        {
            "root_key_select": 0,
            "rsvd": 4,
            "guest_field_select": 8,
            "vmpl": 16,
            "guest_svn": 20,
            "tcb_version": 24,
        },
    ),
    uapi.SnpDerivedKeyResp: (64, {"data": 0}),
    uapi.SnpGuestRequestIoctl: (
        32,
        {
            "msg_version": 0,
            "req_data": 8,
            "resp_data": 16,
            "exitinfo2": 24,
            "fw_error": 24,
            "vmm_error": 28,
        },
    ),
    uapi.SnpExtReportReq: (112, {"data": 0, "certs_address": 96, "certs_len": 104}),
}


@pytest.mark.parametrize("struct_type", list(UAPI_LAYOUT), ids=lambda t: t.__name__)
def test_struct_layouts_match_the_kernel(struct_type):
    size, offsets = UAPI_LAYOUT[struct_type]
    assert ctypes.sizeof(struct_type) == size
    for field, offset in offsets.items():
        assert getattr(struct_type, field).offset == offset, field


def test_ioctl_numbers_match_the_kernel():
    assert uapi.SNP_GET_REPORT == 0xC0205300 == 3223343872
    assert uapi.SNP_GET_DERIVED_KEY == 0xC0205301
    assert uapi.SNP_GET_EXT_REPORT == 0xC0205302
    assert uapi.iowr("S", 0, 32) == 0xC0205300


def test_exitinfo2_is_fw_error_low_vmm_error_high():
    guest = uapi.SnpGuestRequestIoctl()
    guest.exitinfo2 = 2 << 32 | 0x16
    assert (guest.fw_error, guest.vmm_error) == (0x16, 2)
    assert uapi.describe_exitinfo2(0x16, 2) == "firmware INVALID_PARAM (0x16), VMM BUSY (2)"


class FakeDriver:
    """Acts as the sev-guest driver for one simulated chip. `failures` are injected in order:
    (errno, fw_error, vmm_error); extra certificate bytes make the table need more room."""

    REQUESTS = {
        uapi.SNP_GET_REPORT: uapi.SnpReportReq,
        uapi.SNP_GET_DERIVED_KEY: uapi.SnpDerivedKeyReq,
        uapi.SNP_GET_EXT_REPORT: uapi.SnpExtReportReq,
    }

    def __init__(self, sim: SimBackend, *, extra_cert: bytes = b"", status: int = 0):
        self.sim = sim
        self.calls: list[tuple[int, bytes]] = []
        self.failures: list[tuple[int, int, int]] = []
        self.status = status
        self.report_size = 0x4A0
        table = dict(sim.get_certificates().entries)
        if extra_cert:
            table[VCEK_GUID.__class__("11111111-2222-3333-4444-555555555555")] = extra_cert
        self.cert_table = CertTable(table).build()

    def __call__(self, fd: int, number: int, arg) -> int:
        assert isinstance(arg, uapi.SnpGuestRequestIoctl) and arg.msg_version == 1
        assert arg.exitinfo2 == 0
        req_type = self.REQUESTS[number]
        request = req_type.from_address(arg.req_data)
        self.calls.append((number, ctypes.string_at(arg.req_data, ctypes.sizeof(req_type))))
        if self.failures:
            code, arg.fw_error, arg.vmm_error = self.failures.pop(0)
            raise OSError(code, os.strerror(code))
        if number == uapi.SNP_GET_DERIVED_KEY:
            key = self.sim.get_derived_key(
                DerivedKeyRequest(
                    root_key_select=request.root_key_select,
                    guest_field_select=request.guest_field_select,
                    vmpl=request.vmpl,
                    guest_svn=request.guest_svn,
                    tcb_version=request.tcb_version,
                )
            )
            self._respond(arg, struct.pack("<I", self.status) + bytes(28) + key)
            return 0
        report_req = request.data if number == uapi.SNP_GET_EXT_REPORT else request
        if number == uapi.SNP_GET_EXT_REPORT:
            if request.certs_len < len(self.cert_table):
                request.certs_len = len(self.cert_table)  # the kernel reports the size needed
                arg.vmm_error = uapi.VMM_ERR_INVALID_LEN
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            ctypes.memmove(request.certs_address, self.cert_table, len(self.cert_table))
        report = self.sim.get_report(bytes(report_req.user_data), report_req.vmpl)
        header = struct.pack("<II", self.status, self.report_size) + bytes(24)
        self._respond(arg, header + report)
        return 0

    @staticmethod
    def _respond(arg, payload: bytes) -> None:
        ctypes.memmove(arg.resp_data, payload, len(payload))


@pytest.fixture
def device(tmp_path):
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return str(path)


@pytest.fixture
def sim(milan_state):
    return SimBackend(milan_state)


def _backend(device, driver, sleeps=None):
    record = sleeps if sleeps is not None else []
    return SevGuestBackend(device, ioctl=driver, sleep=record.append)


def test_get_report_sends_the_exact_request(device, sim):
    driver = FakeDriver(sim)
    nonce = bytes(range(64))
    raw = _backend(device, driver).get_report(nonce, vmpl=1)
    [(number, request)] = driver.calls
    assert number == 0xC0205300
    assert request == nonce + struct.pack("<I", 1) + bytes(28)
    report = parse_report(raw)
    assert report.report_data == nonce and report.vmpl == 1


def test_get_derived_key_sends_the_exact_request(device, sim):
    driver = FakeDriver(sim)
    request = DerivedKeyRequest(
        root_key_select=1,
        guest_field_select=int(GuestField.MEASUREMENT | GuestField.POLICY),
        vmpl=2,
        guest_svn=0,
        tcb_version=0,
    )
    key = _backend(device, driver).get_derived_key(request)
    [(number, raw)] = driver.calls
    assert number == 0xC0205301
    assert raw == struct.pack("<IIQIIQ", 1, 0, 0b1001, 2, 0, 0)
    assert key == sim.get_derived_key(request) and len(key) == 32


def test_firmware_error_is_named(device, sim):
    driver = FakeDriver(sim)
    driver.failures = [(errno.EIO, 0x16, 0)]
    with pytest.raises(
        SnpFirmwareError, match=r"SNP_GET_REPORT failed: firmware INVALID_PARAM \(0x16\)"
    ) as err:
        _backend(device, driver).get_report()
    assert (err.value.fw_error, err.value.vmm_error) == (0x16, 0)
    assert err.value.code is ErrorCode.SNP_FIRMWARE


def test_firmware_status_in_the_response_is_checked(device, sim):
    driver = FakeDriver(sim, status=0x27)
    with pytest.raises(SnpFirmwareError, match=r"INVALID_KEY \(0x27\)"):
        _backend(device, driver).get_report()
    with pytest.raises(SnpFirmwareError, match="INVALID_KEY"):
        _backend(device, driver).get_derived_key(DerivedKeyRequest())


def test_wrong_report_size_is_refused(device, sim):
    driver = FakeDriver(sim)
    driver.report_size = 0x4A1
    with pytest.raises(BadReportError, match="1185-byte report"):
        _backend(device, driver).get_report()


@pytest.mark.parametrize("failure", [(errno.EIO, 0, uapi.VMM_ERR_BUSY), (errno.EAGAIN, 0, 0)])
def test_busy_is_retried_with_backoff(device, sim, failure):
    driver = FakeDriver(sim)
    driver.failures = [failure, failure]
    sleeps: list[float] = []
    raw = _backend(device, driver, sleeps).get_report()
    assert len(driver.calls) == 3
    assert sleeps == list(RETRY_DELAYS[:2])
    assert parse_report(raw).version == 3


def test_busy_retries_are_bounded(device, sim):
    driver = FakeDriver(sim)
    driver.failures = [(errno.EIO, 0, uapi.VMM_ERR_BUSY)] * 50
    sleeps: list[float] = []
    with pytest.raises(SnpBusyError, match="stayed busy") as err:
        _backend(device, driver, sleeps).get_report()
    assert err.value.code is ErrorCode.SNP_BUSY
    assert len(driver.calls) == len(RETRY_DELAYS) + 1
    assert sleeps == list(RETRY_DELAYS)


def test_extended_report_returns_the_host_certificates(device, sim):
    driver = FakeDriver(sim)
    raw, table = _backend(device, driver).get_extended_report(b"\x07" * 64)
    [(number, request)] = driver.calls
    assert number == 0xC0205302
    assert request[:96] == b"\x07" * 64 + bytes(32)
    assert struct.unpack_from("<I", request, 104)[0] == 8192
    assert table.vcek == sim.get_certificates().vcek
    assert parse_report(raw).report_data == b"\x07" * 64


def test_extended_report_grows_the_certificate_buffer(device, sim):
    driver = FakeDriver(sim, extra_cert=b"\x55" * 12000)
    _raw, table = _backend(device, driver).get_extended_report()
    lengths = [struct.unpack_from("<I", request, 104)[0] for _, request in driver.calls]
    needed = len(driver.cert_table)
    assert lengths == [8192, (needed + 4095) // 4096 * 4096]
    assert len(table.entries) == 4 and table.ark == sim.get_certificates().ark


def test_extended_report_refuses_a_huge_certificate_table(device, sim):
    driver = FakeDriver(sim, extra_cert=b"\x55" * 200_000)
    with pytest.raises(SnpFirmwareError, match=r"need \d+ bytes"):
        _backend(device, driver).get_extended_report()


def test_missing_device_and_unsupported_ioctl(tmp_path, device, sim):
    with pytest.raises(SnpUnavailableError, match="cannot open"):
        SevGuestBackend(str(tmp_path / "absent"), ioctl=FakeDriver(sim)).get_report()
    driver = FakeDriver(sim)
    driver.failures = [(errno.ENOTTY, 0, 0)]
    with pytest.raises(SnpUnavailableError, match="does not support"):
        _backend(device, driver).get_report()


def test_report_data_and_vmpl_are_validated_before_the_ioctl(device, sim):
    driver = FakeDriver(sim)
    backend = _backend(device, driver)
    with pytest.raises(InvalidArgumentError, match="exactly 64 bytes"):
        backend.get_report(b"\x00" * 63)
    with pytest.raises(InvalidArgumentError, match=r"VMPL must be 0\.\.3"):
        backend.get_report(vmpl=4)
    assert driver.calls == []


def test_describe_says_hardware(device):
    assert SevGuestBackend(device).describe() == {
        "name": "sev-guest",
        "simulated": False,
        "device": device,
    }
