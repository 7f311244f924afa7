"""Errors raised by the SNP package, each with its stable wire code."""

from __future__ import annotations

from typing import Any

from guestagent.errors import AgentError, ErrorCode

__all__ = [
    "BadReportError",
    "SnpBusyError",
    "SnpFirmwareError",
    "SnpUnavailableError",
    "VerificationError",
]


class BadReportError(AgentError):
    """A report (or certificate table) is malformed: wrong size, unknown version, reserved bits."""

    code = ErrorCode.SNP_BAD_REPORT


class SnpUnavailableError(AgentError):
    """No usable SNP guest interface (or the chosen one cannot do what was asked)."""

    code = ErrorCode.SNP_UNAVAILABLE


class SnpBusyError(AgentError):
    """The secure processor stayed busy, or a report entry raced, after bounded retries."""

    code = ErrorCode.SNP_BUSY


class SnpFirmwareError(AgentError):
    """The firmware or the VMM refused a guest request; both raw codes are kept."""

    code = ErrorCode.SNP_FIRMWARE

    def __init__(self, message: str, *, fw_error: int = 0, vmm_error: int = 0) -> None:
        super().__init__(message, details={"fw_error": fw_error, "vmm_error": vmm_error})
        self.fw_error = fw_error
        self.vmm_error = vmm_error


class VerificationError(AgentError):
    """A report failed verification; `details["failed"]` lists every failed check."""

    code = ErrorCode.SNP_VERIFY_FAILED

    def __init__(self, message: str, *, failed: list[dict[str, Any]]) -> None:
        super().__init__(message, details={"failed": failed})
        self.failed = failed
