#!/usr/bin/env python3
"""Talk to the guestagent attestation socket from a workload (stdlib only: copy freely).

Usage: attestation_client.py PUBLIC_KEY_FILE [PURPOSE]
Prints one JSON object: the report (base64) over sha512(public key), the certificates, whether
the secure processor is simulated, and the SHA-256 of the sealing key for PURPOSE (the key
itself stays in the workload).
"""

import base64
import hashlib
import json
import os
import socket
import sys

SOCKET = os.environ.get("GUESTAGENT_ATTESTATION_SOCKET", "/run/guestagent/attestation.sock")


def call(request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(SOCKET)
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline())
    if "error" in reply:
        raise SystemExit(f"{reply['error']['code']}: {reply['error']['message']}")
    return reply


def main() -> None:
    with open(sys.argv[1], "rb") as handle:
        public_key = handle.read()
    purpose = sys.argv[2] if len(sys.argv) > 2 else "sealing"
    # 64 bytes of our own data: the digest of our public key binds it to the report.
    report = call({"op": "report", "report_data": hashlib.sha512(public_key).hexdigest()})
    key = bytes.fromhex(
        call({"op": "derived_key", "purpose": purpose, "fields": ["measurement", "policy"]})["key"]
    )
    out = {
        "report": report["report"],
        "report_sha256": hashlib.sha256(base64.b64decode(report["report"])).hexdigest(),
        "certificates": report["certificates"],
        "simulated": report["simulated"],
        "key_sha256": hashlib.sha256(key).hexdigest(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
