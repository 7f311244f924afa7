"""Entropy at boot, and what seeding can honestly mean in a confidential VM.

In an SEV-SNP guest the host controls every virtual device, so a virtio-rng or anything read
from a disk or the command line is chosen by the party we defend against: mixing it in is
harmless, crediting it is not. What the host cannot control is the CPU: RDRAND/RDSEED run in
the guest and the Linux kernel seeds its CRNG from them (plus jitter) before userspace needs
it. So init (1) waits until the kernel says its CRNG is ready (getrandom without GRND_NONBLOCK
blocks until then), and (2) mixes, without crediting, extra material the host cannot read or
choose, e.g. an SNP-derived key, into the pool by writing to /dev/urandom. Crediting (the
RNDADDENTROPY ioctl) is deliberately never done: crediting the kernel's own output back to it
would claim entropy that does not exist, and a derived key is a constant secret, not entropy.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable

from guestagent.records import record

__all__ = ["EntropyReport", "crng_ready", "seed_entropy"]


@record
class EntropyReport:
    ready_before: bool
    waited_seconds: float
    mixed_sources: int


def crng_ready() -> bool:
    try:
        os.getrandom(1, os.GRND_NONBLOCK)
    except BlockingIOError:
        return False
    return True


def seed_entropy(
    extra_sources: Iterable[Callable[[], bytes]] = (),
    *,
    pool: str = "/dev/urandom",
) -> EntropyReport:
    """Block until the kernel CRNG is ready, then mix host-uncontrollable extras into it."""
    ready = crng_ready()
    start = time.monotonic()
    fresh = os.getrandom(64)  # blocks until the CRNG is initialised
    waited = time.monotonic() - start
    digest = hashlib.sha512(fresh)
    mixed = 0
    for source in extra_sources:
        material = source()
        if material:
            digest.update(hashlib.sha512(material).digest())
            mixed += 1
    with open(pool, "wb") as handle:  # a write mixes without crediting
        handle.write(digest.digest())
    return EntropyReport(ready_before=ready, waited_seconds=waited, mixed_sources=mixed)
