"""UpdateInterface's host-stated fields: a PCI path is computed from the guest's sysfs (and
only compared), and raw_flags may only describe an up link."""

from __future__ import annotations

import pytest

from guestagent.kata.rpc_network import pci_path, refused_flags


@pytest.mark.parametrize(
    ("realpath", "expected"),
    [
        ("/sys/devices/pci0000:00/0000:00:03.0/virtio0", "03"),
        ("/sys/devices/pci0000:00/0000:00:02.0/0000:01:1f.0/virtio3", "02/1f"),
        ("/sys/devices/virtual/net/veth0", ""),  # no PCI device: matches no stated path
    ],
)
def test_pci_path_of_a_sysfs_device(realpath, expected):
    assert pci_path(realpath) == expected


def test_only_up_link_flags_are_accepted():
    # IFF_UP|IFF_BROADCAST|IFF_RUNNING|IFF_MULTICAST|IFF_LOWER_UP: what a host veth shows
    assert refused_flags(0x11043) == []
    assert refused_flags(0x1083) == ["IFF_NOARP"]
    assert refused_flags(0x100 | 0x80000000) == ["IFF_PROMISC", "0x80000000"]
