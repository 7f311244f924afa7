from __future__ import annotations

import pytest

from guestagent.errors import InvalidArgumentError
from guestagent.transport.listen import resolve_serial_port
from guestagent.transport.uri import VMADDR_CID_ANY, Endpoint, parse_uri


@pytest.mark.parametrize(
    ("uri", "endpoint"),
    [
        ("unix:///run/guestagent.sock", Endpoint("unix", path="/run/guestagent.sock")),
        ("vsock://any:1024", Endpoint("vsock", cid=VMADDR_CID_ANY, port=1024)),
        ("vsock://3:5000", Endpoint("vsock", cid=3, port=5000)),
        ("vsock://local", Endpoint("vsock", cid=1, port=1024)),
        ("serial:///dev/vport0p1", Endpoint("serial", path="/dev/vport0p1")),
        ("serial://agent.0", Endpoint("serial", port_name="agent.0")),
    ],
)
def test_accepted_uris(uri: str, endpoint: Endpoint) -> None:
    assert parse_uri(uri) == endpoint


@pytest.mark.parametrize(
    "uri",
    [
        "tcp://1.2.3.4:1",
        "unix://",
        "vsock://x:1",
        "vsock://3:0",
        "vsock://3:99999999999",
        "serial://",
        "/run/x.sock",
    ],
)
def test_rejected_uris_explain(uri: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid transport URI"):
        parse_uri(uri)


def test_serial_port_found_by_name_without_udev(tmp_path) -> None:
    for index, name in enumerate(["console.0", "agent.0"]):
        port = tmp_path / "sys/class/virtio-ports" / f"vport0p{index}"
        port.mkdir(parents=True)
        (port / "name").write_text(name + "\n")
    assert resolve_serial_port("agent.0", str(tmp_path / "sys"), "/dev") == "/dev/vport0p1"
    with pytest.raises(Exception, match="no virtio-serial port named 'x'"):
        resolve_serial_port("x", str(tmp_path / "sys"), "/dev")
