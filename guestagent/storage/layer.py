"""Reproducible read-only layer images: OCI layer -> erofs image with its verity tree appended.

erofs because it is read-only by design (no journal, no free-space maps, nothing to replay),
its mkfs sorts directory entries itself, and it takes a fixed UUID and a build time: the image
depends only on the extracted tree. The tree is staged by `tar_extract` (metadata from the tar
headers only); the build time is the newest mtime in the layer (SOURCE_DATE_EPOCH clamps newer
files to it, so nothing is clamped and per-file mtimes survive); the UUID is taken from the
layer's diff_id (sha256 of the uncompressed tar), so layers differ but rebuilds do not.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import uuid as uuidlib
from contextlib import ExitStack, suppress
from typing import BinaryIO

from guestagent.containers import children
from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError
from guestagent.records import record
from guestagent.storage.tar_extract import extract_layer
from guestagent.storage.verity_device import VerityInfo, append_tree

__all__ = ["LayerImage", "build_layer", "diff_id"]

MKFS_EROFS = "mkfs.erofs"


@record
class LayerImage:
    path: str
    root_hash: str
    diff_id: str  # sha256 of the uncompressed layer tar, as OCI image configs list it
    fs_size: int
    verity: VerityInfo


def _open_uncompressed(path: str) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def diff_id(tar_path: str) -> str:
    """sha256 of the uncompressed tar stream, hex."""
    digest = hashlib.sha256()
    try:
        with _open_uncompressed(tar_path) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InvalidArgumentError(f"cannot read layer {tar_path}: {exc}") from exc
    return digest.hexdigest()


def _tar_directory(source: str, tar_path: str) -> None:
    """A directory becomes a tar first, so it takes the same safe path as a layer blob."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=".", recursive=True)  # tarfile sorts directory listings


def _mkfs_erofs(image: str, staging: str, fs_uuid: str, build_time: int) -> None:
    binary = shutil.which(MKFS_EROFS)
    if binary is None:
        raise AgentError(f"{MKFS_EROFS} not found (install erofs-utils)", code=ErrorCode.STORAGE)
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}
    env["SOURCE_DATE_EPOCH"] = str(build_time)
    command = [binary, "--quiet", f"-U{fs_uuid}", image, staging]
    result = children.run(command, env=env)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()[-500:]
        raise AgentError(f"{MKFS_EROFS} failed: {stderr}", code=ErrorCode.STORAGE)


def build_layer(source: str, output: str, work_dir: str | None = None) -> LayerImage:
    """Build `output` from a layer tar (plain/gzip/bzip2/xz) or a directory; return its root."""
    if not os.path.exists(source):
        raise InvalidArgumentError(f"layer source {source} does not exist")
    out_dir = os.path.dirname(os.path.abspath(output))
    with ExitStack() as stack:
        scratch = tempfile.mkdtemp(prefix="layer-", dir=work_dir)
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        tar_path = source
        if os.path.isdir(source):
            tar_path = os.path.join(scratch, "layer.tar")
            _tar_directory(source, tar_path)
        layer_diff_id = diff_id(tar_path)
        staging = os.path.join(scratch, "rootfs")
        os.mkdir(staging)
        build_time = extract_layer(tar_path, staging)
        fs_uuid = str(uuidlib.UUID(bytes=bytes.fromhex(layer_diff_id)[:16]))
        fd, partial = tempfile.mkstemp(prefix=".layer-", suffix=".img", dir=out_dir)
        os.close(fd)
        stack.callback(_unlink_quietly, partial)
        _mkfs_erofs(partial, staging, fs_uuid, build_time)
        fs_size = os.path.getsize(partial)
        info = append_tree(partial)
        os.chmod(partial, 0o644)
        os.replace(partial, output)
    return LayerImage(os.path.abspath(output), info.root_hash, layer_diff_id, fs_size, info)


def _unlink_quietly(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
