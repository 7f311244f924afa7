"""Transport URIs: `unix:///run/guestagent.sock`, `vsock://any:1024`, `vsock://3:1024`,
`serial:///dev/vport0p1` or `serial://agent.0` (a virtio-serial port found by its name)."""

from __future__ import annotations

from urllib.parse import urlsplit

from guestagent.errors import InvalidArgumentError
from guestagent.records import record

__all__ = ["DEFAULT_VSOCK_PORT", "VMADDR_CID_ANY", "Endpoint", "parse_uri"]

DEFAULT_VSOCK_PORT = 1024
VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_CID_LOCAL = 1  # the loopback transport (Python 3.11 has no constant for it)
_CID_NAMES = {"any": VMADDR_CID_ANY, "local": VMADDR_CID_LOCAL, "host": 2}


@record
class Endpoint:
    scheme: str  # "unix" | "vsock" | "serial"
    path: str = ""  # unix socket path or serial device path
    cid: int = VMADDR_CID_ANY
    port: int = DEFAULT_VSOCK_PORT
    port_name: str = ""  # virtio-serial port name, resolved in the guest

    def __str__(self) -> str:
        if self.scheme == "vsock":
            cid = next((k for k, v in _CID_NAMES.items() if v == self.cid), str(self.cid))
            return f"vsock://{cid}:{self.port}"
        if self.scheme == "serial" and self.port_name:
            return f"serial://{self.port_name}"
        return f"{self.scheme}://{self.path}"


def parse_uri(uri: str) -> Endpoint:
    """Parse a transport URI, raising InvalidArgumentError with the accepted forms."""
    parts = urlsplit(uri)
    if parts.scheme == "unix":
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise _bad(uri, "a unix URI needs a socket path: unix:///run/guestagent.sock")
        return Endpoint("unix", path=path)
    if parts.scheme == "vsock":
        return _parse_vsock(uri, parts.netloc)
    if parts.scheme == "serial":
        if parts.path and not parts.netloc:
            return Endpoint("serial", path=parts.path)
        if parts.netloc and not parts.path:
            return Endpoint("serial", port_name=parts.netloc)
        raise _bad(uri, "use serial:///dev/vport0p1 or serial://<port name>")
    raise _bad(uri, "the scheme must be unix, vsock or serial")


def _parse_vsock(uri: str, netloc: str) -> Endpoint:
    cid_text, _, port_text = netloc.partition(":")
    try:
        cid = _CID_NAMES[cid_text] if cid_text in _CID_NAMES else int(cid_text)
        port = int(port_text) if port_text else DEFAULT_VSOCK_PORT
    except ValueError:
        raise _bad(uri, "use vsock://<cid|any|local|host>:<port>") from None
    if not 0 <= cid <= 0xFFFFFFFF or not 0 < port <= 0xFFFFFFFF:
        raise _bad(uri, "cid and port must be 32-bit unsigned integers")
    return Endpoint("vsock", cid=cid, port=port)


def _bad(uri: str, hint: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid transport URI {uri!r}: {hint}", details={"uri": uri})
