"""Helpers for storage tests: veritysetup as the oracle, small tar layers written with tarfile."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

FIXED_UUID = "12345678-1234-5678-1234-567812345678"


def require(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it)")
    return path


def veritysetup_format(binary: str, data: Path, hash_path: Path, *args: str) -> str:
    out = subprocess.run(
        [binary, "format", str(data), str(hash_path), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Root hash:\s+([0-9a-f]+)", out)
    assert match, out
    return match.group(1)


def add_member(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    mtime: int = 1_600_000_000,
    **fields: object,
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    for key, value in fields.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def write_tar(path: Path, members: list[tuple], mode: str = "w") -> Path:
    """members: (name, data|None, kind, extra-fields dict)."""
    with tarfile.open(path, mode) as tar:
        for name, data, kind, extra in members:
            add_member(tar, name, data, kind, **extra)
    return path


def reg(name: str, data: bytes, **extra: object) -> tuple:
    return (name, data, tarfile.REGTYPE, extra)


def directory(name: str, **extra: object) -> tuple:
    return (name, None, tarfile.DIRTYPE, {"mode": 0o755, **extra})


def symlink(name: str, target: str) -> tuple:
    return (name, None, tarfile.SYMTYPE, {"linkname": target, "mode": 0o777})


def hardlink(name: str, target: str) -> tuple:
    return (name, None, tarfile.LNKTYPE, {"linkname": target})
