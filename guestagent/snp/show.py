"""Human-readable rendering of a report and of a verification result (pure)."""

from __future__ import annotations

from typing import Any

from guestagent.snp.fields import Product
from guestagent.snp.report import AttestationReport
from guestagent.snp.result import VerificationResult

__all__ = ["format_report", "format_result"]


def _value(value: Any) -> str:
    if isinstance(value, dict):
        if "raw" in value:
            rest = [f"{k}={v}" for k, v in value.items() if k != "raw" and v is not False]
            return f"{value['raw']} ({', '.join(rest)})" if rest else value["raw"]
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def format_report(report: AttestationReport, product: Product | None = None) -> str:
    """One `name: value` line per field, in specification order."""
    decoded = report.to_json(product)
    width = max(len(name) for name in decoded)
    return "\n".join(f"{name:<{width}}  {_value(value)}" for name, value in decoded.items())


def format_result(result: VerificationResult) -> str:
    lines = [check.describe() for check in result.checks]
    failed = len(result.failures)
    verdict = "PASSED" if result.ok else f"FAILED ({failed} check{'s' if failed != 1 else ''})"
    lines.append(f"verification {verdict}")
    return "\n".join(lines)
