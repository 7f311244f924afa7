"""ECDSA P-384 signing for the simulated secure processor, importable and runnable as a script.

As a script (`python -S -I sign_child.py LIBDIR`) it is the short-lived child `simsign` starts:
it imports nothing of the package, only cryptography from LIBDIR, reads one `<scalar hex>
<message hex>` line on stdin, writes `<r hex> <s hex>` and exits.
"""

from __future__ import annotations

import sys

__all__ = ["sign_p384"]


def sign_p384(scalar: int, message: bytes) -> tuple[int, int]:
    """ECDSA P-384 over SHA-384 of `message` with private scalar `scalar`: (r, s)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.derive_private_key(scalar, ec.SECP384R1())
    return decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA384())))


def main() -> None:
    sys.path[:0] = sys.argv[1:2]
    # cryptography loads before the message is read: a child started ahead loads it while
    # the agent works, instead of after the agent has written the message and waits.
    from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa: F401

    scalar, message = sys.stdin.readline().split()
    r, s = sign_p384(int(scalar, 16), bytes.fromhex(message))
    sys.stdout.write(f"{r:x} {s:x}\n")


if __name__ == "__main__":
    main()
