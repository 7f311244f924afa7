"""The structured outcome of report verification: every check, passed or failed, with values."""

from __future__ import annotations

from typing import Any

from guestagent.records import record
from guestagent.snp.errors import VerificationError
from guestagent.snp.report import AttestationReport

__all__ = ["Check", "VerificationResult", "compare", "fail", "ok"]


@record
class Check:
    """One named check. A failed check always carries what was expected and what was found."""

    name: str
    passed: bool
    expected: str = ""
    actual: str = ""
    detail: str = ""

    def describe(self) -> str:
        status = "ok" if self.passed else "FAILED"
        text = f"{self.name}: {status}"
        if not self.passed:
            text += f" (expected {self.expected}, got {self.actual})"
        if self.detail:
            text += f" - {self.detail}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


def ok(name: str, detail: str = "", *, expected: str = "", actual: str = "") -> Check:
    return Check(name, True, expected, actual, detail)


def fail(name: str, expected: str, actual: str, detail: str = "") -> Check:
    return Check(name, False, expected, actual, detail)


def compare(name: str, expected: Any, actual: Any, detail: str = "") -> Check:
    """Equality check; bytes are shown as lowercase hex."""

    def show(value: Any) -> str:
        return value.hex() if isinstance(value, bytes | bytearray) else str(value)

    return Check(name, expected == actual, show(expected), show(actual), detail)


@record
class VerificationResult:
    checks: tuple[Check, ...]
    report: AttestationReport | None

    @property
    def ok(self) -> bool:
        """True only when there is at least one check and none failed (fail closed)."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def raise_for_failure(self) -> None:
        """Raise VerificationError naming every failed check (and both values) unless ok."""
        if self.ok:
            return
        failures = self.failures
        summary = "; ".join(check.describe() for check in failures) or "no checks ran"
        raise VerificationError(
            f"attestation report verification failed: {summary}",
            failed=[check.to_json() for check in failures],
        )

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.to_json() for check in self.checks]}
