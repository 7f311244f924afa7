"""Fixtures of the whole-VM tier: images built once (cached), guests booted under QEMU TCG.

- `vm_images`: kernel, initramfs, verity rootfs (`guest_images.GuestImages`).
- `vm_firmware`: the OVMF AmdSevX64 build that measures them (`launch_image.build_firmware`).
- `make_guest(cmdline=..., disks=[...])`: boot a fresh guest for one test (stopped afterwards).
- `booted_guest`: one guest per session running the real agent (`guestagent serve` on the
  virtio-serial port `agent.0`, simulated SNP); `.channel_path`, `.console_log`,
  `.add_disk(path, readonly=True, serial=...)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guest_images import GuestImages, build_images
from launch_image import build_firmware
from qemu_guest import Disk, Guest, qemu_binary

# The real agent's launch, as the lead's server takes it; overridable for local experiments.
AGENT_SERVE_ARGS = os.environ.get(
    "GUESTAGENT_VM_SERVE_ARGS", "--snp sim --sim-state /run/guestagent-sim"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.vm)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def vm_images() -> GuestImages:
    if qemu_binary() is None:
        pytest.skip("qemu-system-x86_64 is not installed (run tests/vm/prepare)")
    if os.geteuid() != 0:
        pytest.skip("building the guest image needs root (debootstrap, chroot)")
    started = time.monotonic()
    images = build_images()
    print(f"\nvm images ready in {time.monotonic() - started:.1f}s ({images.kernel_package})")
    return images


@pytest.fixture(scope="session")
def vm_firmware() -> Path:
    """Built by scripts/build-ovmf.sh (cached by its inputs). A failed build fails the tests
    that need it: no skip."""
    started = time.monotonic()
    firmware = build_firmware()
    print(f"\nOVMF AmdSevX64 ready in {time.monotonic() - started:.1f}s")
    return firmware


@pytest.fixture
def make_guest(
    vm_images: GuestImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Guest]]:
    guests: list[Guest] = []

    def make(
        cmdline: str = "",
        disks: list[Disk] | None = None,
        images: GuestImages | None = None,
        **kwargs: object,
    ) -> Guest:
        workdir = tmp_path_factory.mktemp("guest")
        guest = Guest(
            images or vm_images, workdir, cmdline=cmdline, disks=list(disks or []), **kwargs
        )
        guests.append(guest)
        return guest.start()

    yield make
    for guest in guests:
        guest.stop()


@pytest.fixture(scope="session")
def booted_guest(
    vm_images: GuestImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guest]:
    """The session's guest running the real agent. `.client` is a handshaken
    `guestagent.client.sync_client.Client` on the virtio-serial channel, connected before the
    agent opened its port (see test_agent.py for why); `.ready_seconds` is boot-to-handshake."""
    from guestagent.client.sync_client import Client

    workdir = tmp_path_factory.mktemp("booted-guest")
    cmdline = f'guestagent.serve_args="{AGENT_SERVE_ARGS}"' if AGENT_SERVE_ARGS else ""
    guest = Guest(vm_images, workdir, cmdline=cmdline).start()
    try:
        sock = guest.connect_channel()  # before the agent opens its port: see test_agent.py
        guest.wait_for_console(r'"msg":"listening"', timeout=240)
        time.sleep(1.0)  # let the listener open the port before the first bytes arrive
        sock.settimeout(120)
        guest.client = Client(sock)
        guest.client.hello()
        guest.ready_seconds = time.monotonic() - guest.started_at
        print(f"\nguest agent ready (handshake) {guest.ready_seconds:.1f}s after QEMU start")
        yield guest
    finally:
        if guest.client is not None:
            guest.client.close()
        guest.stop()
