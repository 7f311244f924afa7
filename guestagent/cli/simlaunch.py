"""The simulated guest's launch, as `report get --backend sim` and `serve --snp sim` take it.

The secure processor measures what the host launches and signs that MEASUREMENT, and HOST_DATA
as the host set it, into every report. The simulator stands in for it, so it is told both:
MEASUREMENT as a digest (`--sim-measurement`), as the image launched (`--sim-ovmf`,
`--sim-kernel`, `--sim-initrd`, `--sim-append`: the launch digest `image measure` prints), or
as the simulated platform hands it to a booted guest (`--sim-measurement-from-fw-cfg`).

The last one is how a simulated guest learns its own launch digest: the digest covers the
kernel command line, so it cannot travel there. QEMU, the simulated platform, puts it in the
fw_cfg file `opt/guestagent/launch-measurement` (96 hex digits), read in the guest under
/sys/firmware/qemu_fw_cfg (module qemu_fw_cfg). A development stand-in only: the host writes
fw_cfg, so it is never a trust input. It is refused where an SEV-SNP interface exists (as is
the simulator itself, server/modes.py): there the secure processor measures the launch.
Nothing here imports the simulator or cryptography.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guestagent.errors import InvalidArgumentError

__all__ = [
    "FW_CFG_MEASUREMENT",
    "add_launch_options",
    "launch_fields",
    "parse_hex",
    "platform_measurement",
]

FW_CFG_NAME = "opt/guestagent/launch-measurement"
FW_CFG_MEASUREMENT = Path("/sys/firmware/qemu_fw_cfg/by_name") / FW_CFG_NAME / "raw"
LAUNCH_FILES = ("ovmf", "kernel", "initrd")
MEASUREMENT_SIZE = 48


def parse_hex(value: str, size: int | None, what: str) -> bytes:
    """`value` as bytes (an optional 0x prefix), exactly `size` of them when given."""
    try:
        data = bytes.fromhex(value.strip().removeprefix("0x"))
    except ValueError:
        raise InvalidArgumentError(f"{what}: not hex: {value[:120]!r}") from None
    if size is not None and len(data) != size:
        raise InvalidArgumentError(f"{what}: need {size} bytes, got {len(data)}")
    return data


def add_launch_options(group: argparse._ArgumentGroup) -> None:
    """The launch's MEASUREMENT (one source at most) and HOST_DATA."""
    group.add_argument("--sim-measurement", metavar="HEX", help="48-byte launch digest")
    launch = "launch as this image (MEASUREMENT = its launch digest, 1 vCPU EPYC-v4): "
    group.add_argument("--sim-ovmf", metavar="FILE", help=launch + "the AmdSevX64 firmware")
    group.add_argument("--sim-kernel", metavar="FILE", help=launch + "the kernel")
    group.add_argument("--sim-initrd", metavar="FILE", help=launch + "the initramfs")
    group.add_argument("--sim-append", metavar="CMDLINE", help=launch + "the command line")
    group.add_argument(
        "--sim-measurement-from-fw-cfg",
        action="store_true",
        help=f"in a QEMU guest: MEASUREMENT is the launch digest the simulated platform hands "
        f"the guest in fw_cfg {FW_CFG_NAME} (development stand-in; refused where SEV-SNP exists)",
    )
    group.add_argument(
        "--sim-host-data", metavar="HEX", help="HOST_DATA, as the host would set it at launch"
    )


def launch_fields(args: argparse.Namespace) -> dict[str, bytes]:
    """SimConfig fields for the launch options given: `measurement`, `host_data` (or none)."""
    image = {name: getattr(args, f"sim_{name}") for name in (*LAUNCH_FILES, "append")}
    launched = any(value is not None for value in image.values())
    given = {
        "--sim-measurement": bool(args.sim_measurement),
        "a launched image (--sim-ovmf...)": launched,
        "--sim-measurement-from-fw-cfg": bool(args.sim_measurement_from_fw_cfg),
    }
    if sum(given.values()) > 1:
        chosen = " and ".join(name for name, on in given.items() if on)
        raise InvalidArgumentError(f"MEASUREMENT from {chosen}: choose one")
    fields: dict[str, bytes] = {}
    if args.sim_measurement:
        measurement = parse_hex(args.sim_measurement, MEASUREMENT_SIZE, "--sim-measurement")
        fields["measurement"] = measurement
    elif launched:
        fields["measurement"] = _launched_as(image)
    elif args.sim_measurement_from_fw_cfg:
        fields["measurement"] = platform_measurement()
    if args.sim_host_data is not None:
        fields["host_data"] = parse_hex(args.sim_host_data, 32, "--sim-host-data")
    return fields


def _launched_as(given: dict[str, str | None]) -> bytes:
    """The simulated guest launched as this image: MEASUREMENT is the image's launch digest."""
    from guestagent.snp.launch import LaunchDigestUnavailable, LaunchImage

    if None in given.values():
        raise InvalidArgumentError(
            "a simulated launch needs --sim-ovmf, --sim-kernel, --sim-initrd and --sim-append"
        )
    for name in LAUNCH_FILES:
        if not Path(str(given[name])).is_file():
            raise InvalidArgumentError(f"--sim-{name}: no such file: {given[name]}")
    image = LaunchImage(
        ovmf=Path(str(given["ovmf"])),
        kernel=Path(str(given["kernel"])),
        initrd=Path(str(given["initrd"])),
        cmdline=str(given["append"]),
    )
    try:
        return image.launch_digest()
    except LaunchDigestUnavailable as exc:
        raise InvalidArgumentError(f"simulated launch: {exc}") from None


def platform_measurement(
    path: Path = FW_CFG_MEASUREMENT,
    *,
    snp_device: str | None = None,
    tsm_root: str | None = None,
) -> bytes:
    """The launch digest QEMU handed this simulated guest in fw_cfg. Refused where an SEV-SNP
    interface exists: there the host's fw_cfg must never stand in for the secure processor."""
    from guestagent.server.modes import real_snp_interface
    from guestagent.snp.paths import DEFAULT_DEVICE, DEFAULT_ROOT

    interface = real_snp_interface(snp_device or DEFAULT_DEVICE, tsm_root or DEFAULT_ROOT)
    if interface is not None:
        raise InvalidArgumentError(
            f"--sim-measurement-from-fw-cfg refused: this machine has a real SEV-SNP interface "
            f"({interface}); the host's fw_cfg is no measurement"
        )
    try:
        with open(path, "rb") as handle:  # host-written: read no more than a digest could be
            text = handle.read(4 * MEASUREMENT_SIZE).decode("ascii")
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"no launch measurement at {path}: launch QEMU with -fw_cfg name={FW_CFG_NAME},"
            "file=<96 hex digits> (and the guest kernel needs qemu_fw_cfg)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"cannot read the launch measurement {path}: {exc}") from None
    return parse_hex(text, MEASUREMENT_SIZE, f"launch measurement in fw_cfg {FW_CFG_NAME}")
