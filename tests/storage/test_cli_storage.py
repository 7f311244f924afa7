"""`guestagent verity ...` and `guestagent layer build` as a user runs them."""

from __future__ import annotations

import os
import re

import pytest
from storage_helpers import FIXED_UUID, reg, require, veritysetup_format, write_tar

from guestagent.cli import main


def _root_line(text: str) -> str:
    match = re.search(r"Root hash:\s+([0-9a-f]+)", text)
    assert match, text
    return match.group(1)


def test_format_and_verify_exit_codes(tmp_path, capsys):
    vs = require("veritysetup")
    data = tmp_path / "data"
    data.write_bytes(os.urandom(130 * 4096 + 100))  # a partial block: veritysetup ignores it
    theirs = veritysetup_format(vs, data, tmp_path / "h1", "--salt=beef", f"--uuid={FIXED_UUID}")
    hash_path = tmp_path / "h2"
    args = ["verity", "format", str(data), str(hash_path), "--salt", "beef", "--uuid", FIXED_UUID]
    assert main(args) == 0
    out = capsys.readouterr()
    assert _root_line(out.out) == theirs and "not covered" in out.err
    assert (tmp_path / "h1").read_bytes() == hash_path.read_bytes()
    assert main(["verity", "verify", str(data), str(hash_path), theirs]) == 0
    with open(data, "r+b") as fh:
        fh.seek(77 * 4096)
        fh.write(b"!")
    assert main(["verity", "verify", str(data), str(hash_path), theirs]) == 1
    assert "data block 77" in capsys.readouterr().err
    assert main(["verity", "verify", str(data), str(hash_path), theirs, "--block", "76"]) == 0
    assert main(["verity", "verify", str(data), str(hash_path), "nothex"]) == 2
    assert main(["verity", "verify", str(tmp_path / "missing"), str(hash_path), theirs]) == 2


def test_no_superblock_round_trip(tmp_path, capsys):
    data = tmp_path / "data"
    data.write_bytes(os.urandom(9 * 4096))
    hash_path = tmp_path / "h"
    assert (
        main(
            [
                "verity",
                "format",
                str(data),
                str(hash_path),
                "--no-superblock",
                "--hash",
                "sha512",
                "--salt",
                "-",
            ]
        )
        == 0
    )
    root = _root_line(capsys.readouterr().out)
    common = ["--no-superblock", "--hash", "sha512"]
    assert main(["verity", "verify", str(data), str(hash_path), root, *common]) == 0
    assert main(["verity", "verify", str(data), str(hash_path), "00" * 64, *common]) == 1


@pytest.mark.root
def test_layer_build_prints_root_that_verity_root_recomputes(tmp_path, capsys):
    require("mkfs.erofs")
    if os.geteuid() != 0:
        pytest.skip("layer extraction needs root")
    tar = write_tar(tmp_path / "l.tar", [reg("hello", b"world")])
    assert main(["layer", "build", str(tar), "-o", str(tmp_path / "l.img")]) == 0
    root = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", root)
    assert main(["verity", "root", str(tmp_path / "l.img")]) == 0
    assert _root_line(capsys.readouterr().out) == root
    img = str(tmp_path / "l.img")
    assert main(["verity", "verify", img, img, root]) == 0
    evil = write_tar(tmp_path / "evil.tar", [reg("../x", b"")])
    assert main(["layer", "build", str(evil), "-o", str(tmp_path / "e.img")]) == 2
    assert not (tmp_path / "e.img").exists()
