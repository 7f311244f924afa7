"""Safe extraction of an OCI layer tar into a staging directory, whiteouts converted.

Never trusts a member: absolute names, `..`, paths through symlinks, hard links to anything but
an earlier regular member, and device nodes are refused with a clear error. OCI whiteouts become
overlayfs ones: `.wh.NAME` -> char device 0:0 named NAME; `.wh..wh..opq` -> the directory gets
`trusted.overlay.opaque=y`. Ownership, mode and mtime come from the tar headers only, so the
staging tree (and the image built from it) depends on nothing but the tar's content.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import PurePosixPath

from guestagent.errors import InvalidArgumentError

__all__ = ["OPAQUE_XATTR", "LayerTarError", "extract_layer"]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."


class LayerTarError(InvalidArgumentError):
    """The layer tar holds something that must not be extracted."""


def _member_parts(name: str) -> list[str]:
    if name.startswith("/"):
        raise LayerTarError(f"layer tar: absolute path {name!r} refused")
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    if ".." in parts:
        raise LayerTarError(f"layer tar: path {name!r} escapes the layer with '..'")
    return parts


class _Extractor:
    def __init__(self, root: str) -> None:
        self.root = root
        self.dir_times: dict[str, int] = {}
        self.whiteouts: set[str] = set()
        self.max_mtime = 0

    def path_of(self, parts: list[str], name: str) -> str:
        """Staging path for `parts`, refusing any existing parent that is not a real dir."""
        current = self.root
        for part in parts[:-1]:
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                os.mkdir(current, 0o755)  # implied parent: root-owned, fixed mtime
                self.dir_times.setdefault(current, 0)
                continue
            if not stat.S_ISDIR(mode):
                raise LayerTarError(f"layer tar: {name!r} goes through a non-directory {part!r}")
        return os.path.join(current, parts[-1]) if parts else self.root

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _member_parts(member.name)
        if not parts:  # the layer root itself: takes its metadata, nothing else
            self._finish(self.root, member, is_dir=True)
            return
        base = parts[-1]
        if base == OPAQUE_MARKER:
            os.setxattr(self._directory(parts[:-1], member.name), OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX):
            path = self._whiteout(parts, member.name)
            mtime = max(0, int(member.mtime))
            os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)
            return
        path = self.path_of(parts, member.name)
        if path in self.whiteouts:
            raise LayerTarError(f"layer tar: {member.name!r} is both whited out and present")
        self._create(tar, member, path, parts)

    def _directory(self, parts: list[str], name: str) -> str:
        if not parts:
            return self.root
        path = self.path_of(parts, name)
        info = _lstat_or_none(path)
        if info is None:
            os.mkdir(path, 0o755)
            self.dir_times.setdefault(path, 0)
        elif not stat.S_ISDIR(info.st_mode):
            raise LayerTarError(f"layer tar: {name!r} marks a non-directory opaque")
        return path

    def _whiteout(self, parts: list[str], name: str) -> str:
        hidden = parts[-1][len(WHITEOUT_PREFIX) :]
        if not hidden or hidden.startswith(WHITEOUT_PREFIX) or hidden in (".", ".."):
            raise LayerTarError(f"layer tar: unsupported whiteout entry {name!r}")
        path = self.path_of([*parts[:-1], hidden], name)
        if os.path.lexists(path):
            raise LayerTarError(f"layer tar: {name!r} whites out a path this layer also holds")
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        self.whiteouts.add(path)
        return path

    def _create(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, parts: list[str]
    ) -> None:
        existing = _lstat_or_none(path)
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(path)  # a later member replaces an earlier one, as tar does
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(path, 0o700)
        elif member.isreg():
            self._write_file(tar, member, path)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            self._hardlink(member, path)
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() and member.devmajor == 0 and member.devminor == 0:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))  # already an overlay whiteout
        elif member.isdev():
            raise LayerTarError(f"layer tar: device node {member.name!r} refused")
        else:
            raise LayerTarError(f"layer tar: unsupported member type for {member.name!r}")
        self._finish(path, member, is_dir=member.isdir())

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        source = tar.extractfile(member)
        if source is None:
            raise LayerTarError(f"layer tar: cannot read {member.name!r}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with source, os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)

    def _hardlink(self, member: tarfile.TarInfo, path: str) -> None:
        target = self.path_of(_member_parts(member.linkname), member.linkname)
        info = _lstat_or_none(target)
        if info is None or not stat.S_ISREG(info.st_mode):
            raise LayerTarError(
                f"layer tar: hard link {member.name!r} -> {member.linkname!r} must name an "
                "earlier regular file of the same layer"
            )
        os.link(target, path, follow_symlinks=False)

    def _finish(self, path: str, member: tarfile.TarInfo, *, is_dir: bool) -> None:
        if member.islnk():
            return  # a hard link shares the target's inode and metadata
        os.lchown(path, member.uid, member.gid)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        for key in sorted(member.pax_headers):
            if key.startswith(_XATTR_PAX):
                value = member.pax_headers[key].encode("utf-8", "surrogateescape")
                os.setxattr(path, key[len(_XATTR_PAX) :], value, follow_symlinks=False)
        mtime = max(0, int(member.mtime))
        self.max_mtime = max(self.max_mtime, mtime)
        if is_dir:
            self.dir_times[path] = mtime  # set last: creating children changes it
        else:
            os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)

    def finish_directories(self) -> None:
        for path in sorted(self.dir_times, key=lambda p: p.count(os.sep), reverse=True):
            mtime = self.dir_times[path] * 10**9
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def _lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract_layer(tar_path: str, staging: str) -> int:
    """Extract a (possibly compressed) layer tar into the empty directory `staging`.

    Returns the newest mtime seen, which the image build uses as its reproducible build time.
    """
    extractor = _Extractor(staging)
    os.chmod(staging, 0o755)
    os.chown(staging, 0, 0)
    extractor.dir_times[staging] = 0
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                extractor.extract(tar, member)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise LayerTarError(f"layer tar {tar_path}: {exc}") from exc
    extractor.finish_directories()
    return extractor.max_mtime
