"""Launching the simulated guest under a policy, talking to attestation sockets, and checking
what comes back the way a relying party would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guestagent.policy.measure import adopt, measure
from guestagent.snp.amdcerts import load_certificate
from guestagent.snp.backend import DerivedKeyRequest, GuestField
from guestagent.snp.report import parse_report
from guestagent.snp.sim import SimBackend, SimConfig
from guestagent.snp.verify import VerifyOptions, verify_report

LAYER = hashlib.sha256(b"attestation test layer").hexdigest()
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def attester_entry(name: str = "attester", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "layers": [LAYER],
        "command": ["/usr/bin/python3", "/attest/client.py", "/attest/public.pem"],
        "env_rules": [
            {"pattern": "PATH=/bin", "strategy": "string", "required": True},
            {"pattern": "TERM=xterm", "strategy": "string"},
        ],
        "working_dir": "/",
        "user": {"uid": 0, "gid": 0, "additional_gids": []},
        "capabilities": {
            "bounding": CAPS,
            "effective": CAPS,
            "permitted": CAPS,
            "inheritable": [],
            "ambient": [],
        },
        "attestation_socket": True,
        "allow_stdio_access": True,
        "hostname": "test",  # the one host_spec names
        **extra,
    }


def policy_bytes(*entries: dict[str, Any], note: str = "") -> bytes:
    document = {"version": 1, "containers": list(entries) or [attester_entry()]}
    if note:  # a different, equally valid policy: a different digest
        document["external_processes"] = [{"command": ["/bin/true", note]}]
    return json.dumps(document, indent=1).encode()


def launch(chip: Path, policy: bytes) -> SimBackend:
    """The simulated guest launched with HOST_DATA = the policy digest (a fresh backend object
    each time: an agent restart over the same chip)."""
    return SimBackend(chip, SimConfig(host_data=measure(policy).host_data))


def adopted_policy(backend: SimBackend, policy: bytes):
    result = adopt(policy, parse_report(backend.get_report(bytes(64))).host_data)
    assert result.accepted, result.reason
    return result


def expected_key(backend: SimBackend, entry: str, purpose: str, select: GuestField) -> bytes:
    """The documented construction, computed independently of guestagent.attestation."""
    secret = backend.get_derived_key(DerivedKeyRequest(guest_field_select=int(select)))
    host_data = parse_report(backend.get_report(bytes(64))).host_data
    info = f"guestagent/v1/{entry}/{purpose}".encode()
    return HKDF(hashes.SHA256(), 32, salt=host_data, info=info).derive(secret)


def verify_as_relying_party(reply: dict[str, Any], report_data: bytes, host_data: bytes, ark):
    """Check the report with the snp verifier, trusting only the simulator's root."""
    raw = base64.b64decode(reply["report"])
    certs = reply["certificates"]
    assert sorted(certs) == ["ark", "ask", "vcek"]
    chain = [load_certificate(certs["ask"].encode()), load_certificate(certs["ark"].encode())]
    options = VerifyOptions(
        trusted_roots=(ark,),
        expected_report_data=report_data,
        expected_host_data=host_data,
    )
    result = verify_report(raw, load_certificate(certs["vcek"].encode()), chain, options)
    assert result.ok, [c.describe() for c in result.failures]
    return parse_report(raw)


async def ask(path: str | Path, *requests: Any) -> list[dict[str, Any]]:
    """Send request lines (dicts, or raw bytes sent as they are) on one connection."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        replies = []
        for request in requests:
            line = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
            try:
                writer.write(line)
                await writer.drain()
                reply = await reader.readline()
            except ConnectionError:
                reply = b""
            replies.append(json.loads(reply) if reply else {"closed": True})
        return replies
    finally:
        writer.close()


def short_dir() -> Path:
    """unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="gaa-"))
