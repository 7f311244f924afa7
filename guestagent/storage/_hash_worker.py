"""Hash worker process: `python -m guestagent.storage._hash_worker PATH BS ALG SALT STRIDE`.

Reads "offset length" lines on stdin and writes the packed digests of that byte range of PATH
to stdout. Any failure ends the process; the parent reports its stderr.
"""

from __future__ import annotations

import sys

from guestagent.storage.verity_hash import digest_file_range


def main(argv: list[str]) -> int:
    path, block_size, hash_name, salt_hex, stride = argv
    salt = b"" if salt_hex == "-" else bytes.fromhex(salt_hex)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        offset, length = (int(x) for x in line.split())
        out.write(
            digest_file_range(path, offset, length, int(block_size), hash_name, salt, int(stride))
        )
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
