"""Client-side connections: unix sockets (tests, and QEMU's chardev socket for a guest's
virtio-serial port) and AF_VSOCK (a host talking to a guest's CID)."""

from __future__ import annotations

import socket

from guestagent.errors import InvalidArgumentError
from guestagent.transport.uri import Endpoint, parse_uri

__all__ = ["connect_socket"]


def connect_socket(uri: str | Endpoint, timeout: float | None = 10.0) -> socket.socket:
    """A connected, blocking stream socket to the agent at `uri`."""
    endpoint = parse_uri(uri) if isinstance(uri, str) else uri
    if endpoint.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: object = endpoint.path
    elif endpoint.scheme == "vsock":
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        address = (endpoint.cid, endpoint.port)
    else:
        raise InvalidArgumentError(
            f"cannot dial {endpoint}: connect to the unix socket that carries the serial "
            "port on the host side (for QEMU, its chardev socket path)"
        )
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock
