"""Shared helpers for the SNP tests: the real vectors as (report, VCEK, chain) cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from guestagent.snp.amdcerts import load_certificate, load_certificates

# Inside every vector certificate's validity window, so results do not depend on today's date.
VECTOR_TIME = datetime(2026, 1, 1, tzinfo=UTC)

# (report, VCEK, ASK+ARK chain) relative to the snp vectors directory.
VECTOR_CASES = {
    "trustee": ("trustee/test-report.bin", "trustee/test-vcek.der", "trustee/milan_ask_ark.pem"),
    "go-sev-guest": (
        "go-sev-guest/attestation.bin",
        "go-sev-guest/vcek.testcer",
        "go-sev-guest/milan.testcer",
    ),
    "virtee": (
        "virtee-sev/report_milan.bin",
        "virtee-sev/vcek_milan.der",
        "virtee-sev/cert_chain_milan",
    ),
}


@dataclass
class VectorCase:
    name: str
    report: bytes
    vcek: x509.Certificate
    chain: list[x509.Certificate]


def load_case(vectors: Path, name: str) -> VectorCase:
    report, vcek, chain = VECTOR_CASES[name]
    return VectorCase(
        name,
        (vectors / report).read_bytes(),
        load_certificate((vectors / vcek).read_bytes()),
        load_certificates((vectors / chain).read_bytes()),
    )
