"""verified-loop's price for closing the check/use window: copy into a sealed memfd, then
verify the copy, against verifying the host's file in place (the old, racy path), same image,
same run.

Usage: python benches/bench_owned_image.py [--size 256] [--dir DIR] [--repeat 3]   (MiB)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guestagent.storage.owned_image import take_image
from guestagent.storage.verity import verify
from guestagent.storage.verity_device import append_tree


def best(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image data size in MiB")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        image = Path(tmp) / "layer.img"
        image.write_bytes(os.urandom(args.size << 20))
        info = append_tree(str(image))
        root = bytes.fromhex(info.root_hash)

        def in_place() -> None:
            verify(str(image), str(image), root, info.params)

        def sealed_copy() -> None:
            with take_image(str(image), [tmp]) as owned:
                verify(owned.path, owned.path, root, info.params)

        in_place()  # warm the page cache: both read from memory
        base, ours = best(in_place, args.repeat), best(sealed_copy, args.repeat)
    mib = args.size
    print(f"verify in place (baseline): {base:.3f} s  {mib / base:.0f} MiB/s")
    print(f"sealed copy + verify:       {ours:.3f} s  {mib / ours:.0f} MiB/s")
    print(f"ratio ours/baseline: {ours / base:.2f}x (lower is better)")


if __name__ == "__main__":
    main()
