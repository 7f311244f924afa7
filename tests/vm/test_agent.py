"""The real agent in the booted guest, driven through the virtio-serial port with the host
client: the handshake and the status the agent reports about itself.

The session client connects to the channel before the agent opens its port and sends its first
bytes only once the agent listens. Bytes already pending when the agent's serial listener
(re)opens the port are followed by EOF and dropped with the connection, so a host that
connects late is not served (test_host_connecting_late_is_served, reported to the lead), while
a plain O_NONBLOCK+epoll reader on the same port is.
"""

from __future__ import annotations

import pytest
from qemu_guest import Guest

from guestagent.client.sync_client import Client

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def test_handshake_and_status_over_virtio_serial(booted_guest: Guest) -> None:
    client = booted_guest.client
    status = client.status()
    assert status["listeners"] == ["serial://agent.0"]
    assert status["insecure"] is False
    assert not status["tainted"]
    assert status["pid"] > 1  # the agent is init's child, not PID 1
    assert status["uptime_seconds"] > 0
    assert client.ping(b"x" * 1000) is not None
    assert "guestagent-init: agent started" in booted_guest.console()
    print(f"\nboot to agent ready (handshake done): {booted_guest.ready_seconds:.1f}s")


def test_pipelined_requests_are_answered_in_order(booted_guest: Guest) -> None:
    replies = booted_guest.client.call_many([("status", None), ("ping", {}), ("status", None)])
    assert [reply["id"] for reply in replies] == sorted(reply["id"] for reply in replies)
    assert all(reply["ok"] for reply in replies)


def test_host_connecting_late_is_served(make_guest) -> None:
    guest = make_guest()
    guest.wait_for_console(r'"listening"', timeout=240)
    with Client.connect(f"unix://{guest.channel_path}", timeout=30) as client:
        assert client.status()["listeners"] == ["serial://agent.0"]


def test_disks_can_be_hot_added_read_only(booted_guest: Guest, tmp_path) -> None:
    image = tmp_path / "layer.img"
    image.write_bytes(b"\0" * (3 << 20))
    serial = booted_guest.add_disk(image, serial="layer-test")
    assert serial == "layer-test"
    booted_guest.wait_for_console(r"\[vd[b-z]\] 6144 512-byte logical blocks", timeout=60)
    assert booted_guest.client.status()["listeners"] == ["serial://agent.0"]
