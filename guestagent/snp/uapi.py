"""`include/uapi/linux/sev-guest.h` as ctypes structures, ioctl numbers and error names.

Layouts are x86_64 (anchors.md §5.1); tests pin every size, offset and ioctl value.
"""

from __future__ import annotations

import ctypes

__all__ = [
    "FW_ERRORS",
    "MSG_REPORT_RSP_HEADER",
    "SNP_GET_DERIVED_KEY",
    "SNP_GET_EXT_REPORT",
    "SNP_GET_REPORT",
    "VMM_ERR_BUSY",
    "VMM_ERR_INVALID_LEN",
    "SnpDerivedKeyReq",
    "SnpDerivedKeyResp",
    "SnpExtReportReq",
    "SnpGuestRequestIoctl",
    "SnpReportReq",
    "SnpReportResp",
    "describe_exitinfo2",
    "iowr",
]

_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_WRITE, _IOC_READ = 1, 2


def iowr(kind: str, number: int, size: int) -> int:
    """The kernel's _IOWR(type, nr, size) for x86_64 (asm-generic/ioctl.h)."""
    direction = _IOC_READ | _IOC_WRITE
    shift_type = _IOC_NRBITS
    shift_size = shift_type + _IOC_TYPEBITS
    shift_dir = shift_size + _IOC_SIZEBITS
    return direction << shift_dir | size << shift_size | ord(kind) << shift_type | number


class SnpReportReq(ctypes.Structure):
    _fields_ = [
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    ]


class SnpReportResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class SnpDerivedKeyReq(ctypes.Structure):
    _fields_ = [
        ("root_key_select", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint32),
        ("guest_field_select", ctypes.c_uint64),
        ("vmpl", ctypes.c_uint32),
        ("guest_svn", ctypes.c_uint32),
        ("tcb_version", ctypes.c_uint64),
    ]


class SnpDerivedKeyResp(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 64)]


class _ExitInfo(ctypes.Structure):
    _fields_ = [("fw_error", ctypes.c_uint32), ("vmm_error", ctypes.c_uint32)]


class _ExitInfoUnion(ctypes.Union):
    _anonymous_ = ("parts",)
    _fields_ = [("exitinfo2", ctypes.c_uint64), ("parts", _ExitInfo)]


class SnpGuestRequestIoctl(ctypes.Structure):
    _anonymous_ = ("info",)
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("info", _ExitInfoUnion),
    ]


class SnpExtReportReq(ctypes.Structure):
    _fields_ = [
        ("data", SnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    ]


SNP_GET_REPORT = iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_DERIVED_KEY = iowr("S", 0x1, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_EXT_REPORT = iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))

# Firmware MSG_REPORT_RSP / MSG_KEY_RSP: status u32, size u32, reserved to 0x20, payload.
MSG_REPORT_RSP_HEADER = 0x20

VMM_ERR_INVALID_LEN = 1
VMM_ERR_BUSY = 2
_VMM_ERRORS = {VMM_ERR_INVALID_LEN: "INVALID_LEN", VMM_ERR_BUSY: "BUSY", 0xFFFFFFFF: "GENERIC"}

# SEV firmware status codes (SEV-SNP ABI spec, "Status Codes"); 0xFFFFFFFF is the kernel's
# SEV_RET_NO_FW_CALL: the request never reached the firmware.
FW_ERRORS = {
    0x01: "INVALID_PLATFORM_STATE",
    0x02: "INVALID_GUEST_STATE",
    0x03: "INVALID_CONFIG",
    0x04: "INVALID_LENGTH",
    0x05: "ALREADY_OWNED",
    0x06: "INVALID_CERTIFICATE",
    0x07: "POLICY_FAILURE",
    0x08: "INACTIVE",
    0x09: "INVALID_ADDRESS",
    0x0A: "BAD_SIGNATURE",
    0x0B: "BAD_MEASUREMENT",
    0x0C: "ASID_OWNED",
    0x0D: "INVALID_ASID",
    0x0E: "WBINVD_REQUIRED",
    0x0F: "DFFLUSH_REQUIRED",
    0x10: "INVALID_GUEST",
    0x11: "INVALID_COMMAND",
    0x12: "ACTIVE",
    0x13: "HWERROR_PLATFORM",
    0x14: "HWERROR_UNSAFE",
    0x15: "UNSUPPORTED",
    0x16: "INVALID_PARAM",
    0x17: "RESOURCE_LIMIT",
    0x18: "SECURE_DATA_INVALID",
    0x19: "INVALID_PAGE_SIZE",
    0x1A: "INVALID_PAGE_STATE",
    0x1B: "INVALID_MDATA_ENTRY",
    0x1C: "INVALID_PAGE_OWNER",
    0x1D: "AEAD_OFLOW",
    0x1F: "RB_MODE_EXITED",
    0x20: "RMP_INIT_REQUIRED",
    0x21: "BAD_SVN",
    0x22: "BAD_VERSION",
    0x23: "SHUTDOWN_REQUIRED",
    0x24: "UPDATE_FAILED",
    0x25: "RESTORE_REQUIRED",
    0x26: "RMP_INITIALIZATION_FAILED",
    0x27: "INVALID_KEY",
    0xFFFFFFFF: "NO_FW_CALL",
}


def fw_error_name(code: int) -> str:
    return f"{FW_ERRORS.get(code, 'UNKNOWN')} (0x{code:x})"


def describe_exitinfo2(fw_error: int, vmm_error: int) -> str:
    """Human-readable exitinfo2, e.g. "firmware INVALID_PARAM (0x16)" or "VMM BUSY (2)"."""
    parts = []
    if fw_error:
        parts.append(f"firmware {fw_error_name(fw_error)}")
    if vmm_error:
        parts.append(f"VMM {_VMM_ERRORS.get(vmm_error, 'UNKNOWN')} ({vmm_error})")
    return ", ".join(parts) or "no firmware or VMM error code"
