"""The boot timeline of this checkout's guest image, and QEMU start to handshake and to first
container output against another image, booted in turns in the same run.

Each boot is the VM tier's timeline flow (tests/vm/timeline_flow.py): QEMU (TCG) boots the
kernel, initramfs and dm-verity root, `guestagent init` starts the agent (simulated SNP), and
the host hands over the policy, mounts a verity layer, and runs the demo container to its
first output byte. The table has this image's stages from its own stamps; the comparison row
(QEMU start to handshake) is measured by the host alone, the same way for both images (the
other image's agent is driven only to the handshake: today's policy may have fields it does
not know).

    python benches/bench_boot.py [--rounds 1] [--baseline DIR]   # as root

--baseline DIR: another checkout (say `git archive 668320d` unpacked in DIR); its images are
built by its own tests/vm/guest_images.py, cached under DIR/.cache/vm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "vm"))

from _report import Row, median
from _report import markdown_table as rows_table
from boot_timeline import markdown_table
from guest_images import GuestImages, build_images
from qemu_guest import Guest
from timeline_flow import FlowResult, make_layer, run_flow

BUILD_OTHER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from guest_images import build_images
images = build_images()
print(json.dumps({k: str(v) if not isinstance(v, dict) else v for k, v in vars(images).items()}))
"""


def other_images(checkout: Path) -> GuestImages:
    env = {**os.environ, "GUESTAGENT_VM_CACHE": str(checkout / ".cache" / "vm")}
    env["PYTHONPATH"] = str(checkout)
    result = subprocess.run(
        [sys.executable, "-c", BUILD_OTHER, str(checkout / "tests" / "vm")],
        capture_output=True, text=True, env=env, cwd=checkout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"building {checkout}'s images failed:\n{result.stderr[-3000:]}")
    paths = json.loads(result.stdout.splitlines()[-1])
    return GuestImages(
        kernel=Path(paths["kernel"]),
        initramfs=Path(paths["initramfs"]),
        rootfs=Path(paths["rootfs"]),
        root_env=paths["root_env"],
        kernel_package=paths["kernel_package"],
    )


def boot(images: GuestImages, work: Path, layer, *, timeline: bool, to_output: bool) -> FlowResult:
    guests: list[Guest] = []

    def start(cmdline: str, disks) -> Guest:
        workdir = Path(tempfile.mkdtemp(prefix="guest-", dir=work))
        guest = Guest(images, workdir, cmdline=cmdline, disks=list(disks))
        guests.append(guest)
        return guest.start()

    try:
        return run_flow(start, layer, timeline=timeline, to_output=to_output)
    finally:
        for guest in guests:
            guest.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout")
    args = parser.parse_args()
    images = build_images()
    baseline = other_images(args.baseline.resolve()) if args.baseline else None
    work = Path(tempfile.mkdtemp(prefix="ga-bench-boot-"))
    try:
        layer = make_layer(work)
        ours: list[FlowResult] = []
        theirs: list[FlowResult] = []
        for _ in range(args.rounds):
            ours.append(boot(images, work, layer, timeline=True, to_output=True))
            if baseline is not None:  # to the handshake: today's policy may be new to it
                theirs.append(boot(baseline, work, layer, timeline=False, to_output=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(ours[-1].stages))
    if theirs:
        name = args.baseline.name
        rows = []
        for label, pick in (("handshake", "handshake"),):
            mine = median([getattr(r, pick) for r in ours])
            other = median([getattr(r, pick) for r in theirs])
            rows.append(
                Row(
                    "boot",
                    f"QEMU start to {label} (TCG), p50 of {args.rounds}",
                    f"{mine:.1f} s",
                    f"{name}'s image {other:.1f} s",
                    mine / other,
                    "lower",
                )
            )
        print()
        print(rows_table(rows))
        pairs = zip(ours, theirs, strict=True)
        each = ", ".join(f"{a.handshake:.1f}/{b.handshake:.1f}" for a, b in pairs)
        print(f"\neach round, this/{name} (s): {each}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
