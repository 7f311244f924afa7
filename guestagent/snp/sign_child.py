"""ECDSA P-384 signing for the simulated secure processor, and the signing child's one job.

`sign_one` is what the child `simsign` starts runs, whichever way it was started: on fds 0
and 1 it reads one `<scalar hex> <message hex>` line, writes `<r hex> <s hex>` and returns.
A fork of the agent calls it directly (`containers/forked.py`); otherwise the child is this
file run as a script (`python -S -I sign_child.py LIBDIR`), which imports nothing of the
package, only cryptography from LIBDIR.
"""

from __future__ import annotations

import os
import sys

__all__ = ["sign_one", "sign_p384"]

_MAX_REQUEST = 1 << 16


def sign_p384(scalar: int, message: bytes) -> tuple[int, int]:
    """ECDSA P-384 over SHA-384 of `message` with private scalar `scalar`: (r, s)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.derive_private_key(scalar, ec.SECP384R1())
    return decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA384())))


def sign_one(read_fd: int = 0, write_fd: int = 1) -> None:
    """Read one request line from `read_fd`, sign it, write the signature line to `write_fd`."""
    # cryptography loads, and OpenSSL sets up its first signature (its random generator and
    # the curve: 8-9 ms here), before the message is read: a child started ahead does both
    # while the agent works, instead of after the agent has written the message and waits.
    sign_p384(1, b"")

    request = bytearray()
    while not request.endswith(b"\n"):
        chunk = os.read(read_fd, 4096)
        if not chunk or len(request) > _MAX_REQUEST:
            raise ValueError("no complete request on stdin")
        request += chunk
    scalar, message = request.split()
    r, s = sign_p384(int(scalar, 16), bytes.fromhex(message.decode()))
    reply = memoryview(f"{r:x} {s:x}\n".encode())
    while reply:
        reply = reply[os.write(write_fd, reply) :]


if __name__ == "__main__":
    sys.path[:0] = sys.argv[1:2]
    sign_one()
    os._exit(0)  # its reply is written: no interpreter shutdown before the agent sees EOF
