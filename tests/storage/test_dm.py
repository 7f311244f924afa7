"""DM ioctl client: exact request bytes, crafted replies, table lines (no device-mapper here)."""

from __future__ import annotations

import os
import struct

import pytest

from guestagent.errors import AgentError, InvalidArgumentError
from guestagent.storage.dm import (
    DM_IOCTL,
    DM_TARGET_SPEC,
    DmClient,
    Target,
    crypt_table,
    decode_dev,
    pack_dm_ioctl,
    pack_table,
    verity_table,
)
from guestagent.storage.verity_params import VerityParams

ROOT = "ab" * 32


def test_struct_sizes_and_header_layout():
    assert DM_IOCTL.size == 312 and DM_TARGET_SPEC.size == 40
    raw = pack_dm_ioctl("layer0", data_size=400, flags=1, target_count=1)
    assert struct.unpack_from("<3I", raw) == (4, 0, 0)
    assert struct.unpack_from("<IIIiI", raw, 12) == (400, 312, 1, 0, 1)
    assert raw[48:54] == b"layer0" and raw[54] == 0 and raw[176:305] == bytes(129)
    with pytest.raises(InvalidArgumentError):
        pack_dm_ioctl("x" * 128, data_size=312)


def test_target_specs_are_8_aligned_and_chained():
    raw = pack_table([Target(0, 8, "verity", "abc"), Target(8, 16, "linear", "/dev/x 0")])
    first = DM_TARGET_SPEC.unpack_from(raw, 0)
    assert first[:2] == (0, 8) and first[3] == 48 and first[4].rstrip(b"\0") == b"verity"
    assert raw[40:44] == b"abc\0"
    second = DM_TARGET_SPEC.unpack_from(raw, 48)
    assert second[:2] == (8, 16) and second[3] == 56 and raw[88:97] == b"/dev/x 0\0"
    assert len(raw) == 48 + 56


def test_verity_table_line_matches_the_kernel_format():
    params = VerityParams(data_blocks=262144, salt=bytes(32), hash_offset=262144 * 4096)
    line = verity_table("/dev/vda", "/dev/vda", params, ROOT).line()
    assert line == (
        f"0 2097152 verity 1 /dev/vda /dev/vda 4096 4096 262144 262145 sha256 {ROOT} " + "00" * 32
    )
    nosb = VerityParams(data_blocks=8, superblock=False)
    line = verity_table("/dev/a", "/dev/b", nosb, ROOT, "restart").line()
    assert (
        line == f"0 64 verity 1 /dev/a /dev/b 4096 4096 8 0 sha256 {ROOT} - 1 restart_on_corruption"
    )
    panic = verity_table("/dev/a", "/dev/b", nosb, ROOT, "panic", ["check_at_most_once"]).line()
    assert panic.endswith(" 2 panic_on_corruption check_at_most_once")
    for bad in [dict(on_corruption="ignore"), dict(extra_options=["ignore_corruption"])]:
        with pytest.raises(InvalidArgumentError):
            verity_table("/dev/a", "/dev/b", nosb, ROOT, **bad)
    with pytest.raises(InvalidArgumentError):
        verity_table("/dev/a", "/dev/b", nosb, "zz" * 32)
    with pytest.raises(InvalidArgumentError):
        verity_table("/dev/a", "/dev/b", nosb, "ab" * 31)


def test_crypt_table_line():
    key = "11" * 64
    assert crypt_table("/dev/vdc", 2048, key).line() == (
        f"0 2048 crypt aes-xts-plain64 {key} 0 /dev/vdc 0"
    )
    for bad_key in ("11" * 10, "not hex"):
        with pytest.raises(InvalidArgumentError):
            crypt_table("/dev/vdc", 2048, bad_key)


def test_decode_dev():
    assert decode_dev((253 << 8) | 3) == (253, 3)
    assert decode_dev((253 << 8) | 0x34 | (0x12 << 20)) == (253, 0x1234)


class FakeKernel:
    """Records every ioctl and answers like the kernel would for the create sequence."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[int, bytes]] = []
        self.fail_on = fail_on
        self.nodes: list[tuple[str, int, int]] = []

    def ioctl(self, fd: int, request: int, buf: bytearray) -> None:
        assert fd == 99
        self.calls.append((request, bytes(buf)))
        command = request & 0xFF
        if command == self.fail_on:
            raise OSError(22, "Invalid argument")
        if command == 0:
            struct.pack_into("<3I", buf, 0, 4, 48, 0)
        if command == 3:
            struct.pack_into("<Q", buf, 40, (253 << 8) | 7)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        self.nodes.append((path, mode, dev))


def _client(kernel: FakeKernel, tmp_path) -> DmClient:
    return DmClient(
        ioctl=kernel.ioctl, open_control=lambda _: 99, dev_dir=str(tmp_path), mknod=kernel.mknod
    )


def test_open_verity_sequence_and_bytes(tmp_path):
    kernel = FakeKernel()
    params = VerityParams(data_blocks=16, salt=b"", hash_offset=16 * 4096)
    path = _client(kernel, tmp_path).open_verity("lay", "/dev/vda", "/dev/vda", params, ROOT)
    assert path == str(tmp_path / "lay")
    assert [req for req, _ in kernel.calls] == [0xC138FD00, 0xC138FD03, 0xC138FD09, 0xC138FD06]
    load = kernel.calls[2][1]
    header = DM_IOCTL.unpack_from(load)
    assert header[3:6] == (len(load), 312, 1)  # data_size, data_start, target_count
    assert header[7] == 1  # DM_READONLY_FLAG
    spec = DM_TARGET_SPEC.unpack_from(load, 312)
    assert spec[:2] == (0, 128) and spec[4].rstrip(b"\0") == b"verity"
    params_text = load[352 : load.index(b"\0", 352)].decode()
    assert params_text == f"1 /dev/vda /dev/vda 4096 4096 16 17 sha256 {ROOT} -"
    resume = DM_IOCTL.unpack_from(kernel.calls[3][1])
    assert resume[7] & 2 == 0  # no DM_SUSPEND_FLAG: this is a resume
    assert kernel.nodes[0][2] == os.makedev(253, 7)


def test_failed_load_removes_the_device(tmp_path):
    kernel = FakeKernel(fail_on=9)
    params = VerityParams(data_blocks=16)
    with pytest.raises(AgentError, match="command 9"):
        _client(kernel, tmp_path).open_verity("lay", "/dev/a", "/dev/b", params, ROOT)
    assert [req & 0xFF for req, _ in kernel.calls] == [0, 3, 9, 4]
    assert kernel.calls[3][1][48:51] == b"lay" and kernel.nodes == []


def test_crypt_load_is_writable_and_secure(tmp_path):
    kernel = FakeKernel()
    _client(kernel, tmp_path).open_crypt("scratch", "/dev/vdc", 4096, "22" * 64)
    flags = DM_IOCTL.unpack_from(kernel.calls[2][1])[7]
    assert flags & 1 == 0 and flags & (1 << 15)


def test_table_status_parses_kernel_reply(tmp_path):
    def ioctl(fd: int, request: int, buf: bytearray) -> None:
        assert request == 0xC138FD0C and len(buf) >= 16 << 10
        specs = bytearray()
        for start, length, kind, text in [(0, 8, b"verity", b"V"), (8, 8, b"crypt", b"ok")]:
            body = bytearray(DM_TARGET_SPEC.pack(start, length, 0, 0, kind) + text + b"\0")
            body += bytes(-len(body) % 8)
            # replies: next is relative to the data start
            struct.pack_into("<I", body, 20, len(specs) + len(body))
            specs += body
        buf[312 : 312 + len(specs)] = specs
        struct.pack_into("<I", buf, 20, 2)

    client = DmClient(ioctl=ioctl, open_control=lambda _: 1, dev_dir=str(tmp_path))
    assert client.table_status("lay") == [Target(0, 8, "verity", "V"), Target(8, 8, "crypt", "ok")]


def test_missing_control_node_is_a_clear_error(tmp_path):
    client = DmClient(str(tmp_path / "control"), dev_dir=str(tmp_path))
    with pytest.raises(AgentError, match="device-mapper unavailable"):
        client.version()


def test_table_status_retries_with_a_bigger_buffer_when_full(tmp_path):
    sizes = []

    def ioctl(fd: int, request: int, buf: bytearray) -> None:
        sizes.append(len(buf))
        if len(sizes) == 1:
            struct.pack_into("<I", buf, 28, 1 << 8)  # DM_BUFFER_FULL_FLAG

    client = DmClient(ioctl=ioctl, open_control=lambda _: 1, dev_dir=str(tmp_path))
    assert client.table_status("lay") == []
    assert sizes[1] == 4 * sizes[0]
