"""SEV-SNP: attestation reports, the guest device backends, a simulator, and verification.

The small API the agent needs::

    backend = open_backend("auto")            # or "sim" with sim_state=..., never implicit
    report = parse_report(backend.get_report(nonce64))
    report.host_data                          # the 32 bytes the policy digest must equal
    backend.describe()                        # {"name": ..., "simulated": bool, ...}

Relying parties use `verify.verify_report`. Pure modules: report, fields, cert_table,
amdcerts, chain, verify, result, simca. I/O: sevguest, configfs, sim/simstate, device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guestagent.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from guestagent.snp.backend import DerivedKeyRequest, GuestField, SnpBackend
    from guestagent.snp.device import open_backend
    from guestagent.snp.report import AttestationReport, parse_report

__all__ = [
    "AttestationReport",
    "DerivedKeyRequest",
    "GuestField",
    "SnpBackend",
    "open_backend",
    "parse_report",
]

# Loaded on first use: the agent starts without the backends it was not asked for (the
# simulator and the certificate code bring in cryptography).
__getattr__ = lazy_exports(
    __name__,
    {
        "AttestationReport": "report",
        "DerivedKeyRequest": "backend",
        "GuestField": "backend",
        "SnpBackend": "backend",
        "open_backend": "device",
        "parse_report": "report",
    },
)
