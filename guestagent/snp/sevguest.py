"""The Linux /dev/sev-guest backend: SNP_GET_REPORT, SNP_GET_DERIVED_KEY, SNP_GET_EXT_REPORT.

The ioctl itself is a seam (`ioctl=`, default `fcntl.ioctl`) so tests can act as the kernel:
read the request through the pointers in `snp_guest_request_ioctl`, write a response, and set
exitinfo2. Busy/throttled requests are retried with bounded backoff; firmware and VMM errors
become `SnpFirmwareError` naming both codes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guestagent.snp import uapi
from guestagent.snp.backend import (
    DerivedKeyRequest,
    check_report_data,
    check_vmpl,
)
from guestagent.snp.errors import (
    BadReportError,
    SnpBusyError,
    SnpFirmwareError,
    SnpUnavailableError,
)
from guestagent.snp.paths import DEFAULT_DEVICE
from guestagent.snp.report import REPORT_SIZE

if TYPE_CHECKING:  # the table (and uuid) load with the first certificates asked for
    from guestagent.snp.cert_table import CertTable

__all__ = ["DEFAULT_DEVICE", "IoctlFunction", "SevGuestBackend"]

IoctlFunction = Callable[[int, int, Any], Any]
PAGE_SIZE = 4096
INITIAL_CERTS_LEN = 2 * PAGE_SIZE
MAX_CERTS_LEN = 16 * PAGE_SIZE
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds; bounded: about 1.5 s in all
_RETRY_ERRNOS = {errno.EAGAIN, errno.EBUSY}


def _page_round(size: int) -> int:
    return (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


class SevGuestBackend:
    """Attestation through the sev-guest driver's ioctls."""

    name = "sev-guest"
    simulated = False

    def __init__(
        self,
        path: str = DEFAULT_DEVICE,
        *,
        ioctl: IoctlFunction = fcntl.ioctl,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self._ioctl = ioctl
        self._sleep = sleep

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "simulated": False, "device": self.path}

    # -- the one place that talks to the driver ---------------------------------------------
    def _request(self, number: int, command: str, req: ctypes.Structure, resp: ctypes.Structure):
        guest = uapi.SnpGuestRequestIoctl()
        guest.msg_version = 1
        guest.req_data = ctypes.addressof(req)
        guest.resp_data = ctypes.addressof(resp)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise SnpUnavailableError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            return self._call_with_retry(fd, number, command, guest)
        finally:
            os.close(fd)

    def _call_with_retry(
        self, fd: int, number: int, command: str, guest: uapi.SnpGuestRequestIoctl
    ) -> uapi.SnpGuestRequestIoctl:
        for delay in (*RETRY_DELAYS, None):
            guest.exitinfo2 = 0
            try:
                self._ioctl(fd, number, guest)
                return guest
            except OSError as exc:
                busy = exc.errno in _RETRY_ERRNOS or guest.vmm_error == uapi.VMM_ERR_BUSY
                if busy and delay is not None:
                    self._sleep(delay)
                    continue
                if busy:
                    raise SnpBusyError(
                        f"{command}: the secure processor stayed busy after "
                        f"{len(RETRY_DELAYS) + 1} attempts"
                    ) from None
                raise self._error(command, exc, guest) from None
        raise AssertionError("unreachable")

    def _error(self, command: str, exc: OSError, guest: uapi.SnpGuestRequestIoctl) -> Exception:
        if exc.errno == errno.ENOTTY:
            return SnpUnavailableError(f"{command}: {self.path} does not support this ioctl")
        if exc.errno == errno.ETIMEDOUT:
            return SnpBusyError(f"{command}: the kernel timed out waiting for the firmware")
        what = uapi.describe_exitinfo2(guest.fw_error, guest.vmm_error)
        return SnpFirmwareError(
            f"{command} failed: {what} (errno {exc.errno}: {exc.strerror})",
            fw_error=guest.fw_error,
            vmm_error=guest.vmm_error,
        )

    # -- reports ----------------------------------------------------------------------------
    def get_report(self, report_data: bytes = bytes(64), vmpl: int = 0) -> bytes:
        req = _report_req(report_data, vmpl)
        resp = uapi.SnpReportResp()
        self._request(uapi.SNP_GET_REPORT, "SNP_GET_REPORT", req, resp)
        return _report_from_response(bytes(resp.data))

    def get_extended_report(
        self, report_data: bytes = bytes(64), vmpl: int = 0
    ) -> tuple[bytes, CertTable | None]:
        certs_len = INITIAL_CERTS_LEN
        while True:
            req = uapi.SnpExtReportReq()
            req.data = _report_req(report_data, vmpl)
            certs = ctypes.create_string_buffer(certs_len)
            req.certs_address = ctypes.addressof(certs)
            req.certs_len = certs_len
            resp = uapi.SnpReportResp()
            try:
                self._request(uapi.SNP_GET_EXT_REPORT, "SNP_GET_EXT_REPORT", req, resp)
            except SnpFirmwareError as exc:
                certs_len = self._grown_certs_len(exc, req.certs_len, certs_len)
                continue
            report = _report_from_response(bytes(resp.data))
            return report, _cert_table(certs.raw[: req.certs_len or certs_len])

    @staticmethod
    def _grown_certs_len(exc: SnpFirmwareError, needed: int, current: int) -> int:
        """On INVALID_LEN the kernel wrote the needed size into certs_len: grow once to it."""
        if exc.vmm_error != uapi.VMM_ERR_INVALID_LEN:
            raise exc
        grown = _page_round(needed)
        if grown <= current or grown > MAX_CERTS_LEN:
            raise SnpFirmwareError(
                f"SNP_GET_EXT_REPORT: host certificates need {needed} bytes "
                f"(buffer was {current}, limit {MAX_CERTS_LEN})",
                vmm_error=exc.vmm_error,
            ) from None
        return grown

    def get_certificates(self) -> CertTable | None:
        return self.get_extended_report()[1]

    # -- derived keys -------------------------------------------------------------------------
    def get_derived_key(self, request: DerivedKeyRequest) -> bytes:
        req = uapi.SnpDerivedKeyReq()
        req.root_key_select = request.root_key_select
        req.guest_field_select = request.guest_field_select
        req.vmpl = request.vmpl
        req.guest_svn = request.guest_svn
        req.tcb_version = request.tcb_version
        resp = uapi.SnpDerivedKeyResp()
        self._request(uapi.SNP_GET_DERIVED_KEY, "SNP_GET_DERIVED_KEY", req, resp)
        data = bytes(resp.data)
        status = int.from_bytes(data[:4], "little")
        if status:
            raise SnpFirmwareError(
                f"SNP_GET_DERIVED_KEY: firmware status {uapi.fw_error_name(status)}",
                fw_error=status,
            )
        return data[uapi.MSG_REPORT_RSP_HEADER : uapi.MSG_REPORT_RSP_HEADER + 32]


def _report_req(report_data: bytes, vmpl: int) -> uapi.SnpReportReq:
    req = uapi.SnpReportReq()
    ctypes.memmove(req.user_data, check_report_data(report_data), 64)
    req.vmpl = check_vmpl(vmpl)
    return req


def _report_from_response(data: bytes) -> bytes:
    """Strip MSG_REPORT_RSP's header after checking its status and size."""
    status = int.from_bytes(data[0:4], "little")
    size = int.from_bytes(data[4:8], "little")
    if status:
        raise SnpFirmwareError(
            f"SNP_GET_REPORT: firmware status {uapi.fw_error_name(status)}", fw_error=status
        )
    if size != REPORT_SIZE:
        raise BadReportError(f"firmware returned a {size}-byte report, expected {REPORT_SIZE}")
    start = uapi.MSG_REPORT_RSP_HEADER
    return data[start : start + REPORT_SIZE]


def _cert_table(data: bytes) -> CertTable | None:
    if not any(data[:24]):
        return None  # the host supplied no certificates
    from guestagent.snp.cert_table import CertTable

    return CertTable.parse(data)
