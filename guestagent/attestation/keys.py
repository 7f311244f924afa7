"""Workload keys: the secure processor's derived key, bound to the policy and the entry.

SNP_GET_DERIVED_KEY mixes the selected guest fields (the launch measurement, the guest
policy, ...) into a key only this VM image on this chip can obtain. HOST_DATA, which carries
the policy digest, is not a selectable field, so the policy is bound on top:

    key = HKDF-SHA256(ikm  = derived key (32 bytes),
                      salt = HOST_DATA from a fresh report (signed by the PSP: not the host's
                             word, and not a value the agent could misremember),
                      info = "guestagent/v1/" + policy entry name + "/" + purpose)

Two policies give two keys; the same policy, measurement and chip give the same key across
agent restarts; two entries of one policy never share a key (purpose contains no '/').
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guestagent.snp.backend import DerivedKeyRequest, GuestField, SnpBackend
from guestagent.snp.report import parse_report

__all__ = ["KEY_INFO_PREFIX", "KEY_SIZE", "derive_workload_key", "guest_field_select", "key_info"]

KEY_SIZE = 32
KEY_INFO_PREFIX = "guestagent/v1/"
_FIELD_BITS = {
    "measurement": GuestField.MEASUREMENT,
    "policy": GuestField.POLICY,
    "image_id": GuestField.IMAGE_ID,
    "family_id": GuestField.FAMILY_ID,
    "guest_svn": GuestField.GUEST_SVN,
    "tcb_version": GuestField.TCB_VERSION,
}


def guest_field_select(fields: Sequence[str]) -> int:
    select = GuestField(0)
    for name in fields:
        select |= _FIELD_BITS[name]
    return int(select)


def key_info(entry_name: str, purpose: str) -> bytes:
    return f"{KEY_INFO_PREFIX}{entry_name}/{purpose}".encode()


def derive_workload_key(
    backend: SnpBackend,
    entry_name: str,
    purpose: str,
    fields: Sequence[str],
    *,
    vmpl: int = 0,
) -> bytes:
    """The 32-byte key for one policy entry and purpose (blocking: call in a thread)."""
    report = parse_report(backend.get_report(bytes(64), vmpl))
    request = DerivedKeyRequest(
        guest_field_select=guest_field_select(fields),
        vmpl=vmpl,
        # The values the firmware mixes in when selected: the guest's own, from the report.
        guest_svn=report.guest_svn if "guest_svn" in fields else 0,
        tcb_version=report.reported_tcb if "tcb_version" in fields else 0,
    )
    secret = backend.get_derived_key(request)
    hkdf = HKDF(
        hashes.SHA256(), KEY_SIZE, salt=report.host_data, info=key_info(entry_name, purpose)
    )
    return hkdf.derive(secret)
