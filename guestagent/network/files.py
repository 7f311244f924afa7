"""A container's resolv.conf and hosts: validated content, safe atomic writes.

The agent keeps these files in a per-container directory it owns (`base/<container_id>/`) and
bind-mounts them into the container. Every path step below `base` is opened with O_NOFOLLOW
relative to its parent's fd, so a symlink planted there cannot redirect the write; the file is
written to a temporary name, fsynced and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from guestagent.errors import InvalidArgumentError

__all__ = ["render_hosts", "render_resolv_conf", "write_hosts", "write_resolv_conf"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*\.?"
)
_OPTION = re.compile(r"[a-z][a-z0-9_-]{0,31}(:[0-9]{1,5})?")
MAX_NAMESERVERS = 3  # what glibc's resolver reads
MAX_SEARCH = 6


def _address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgumentError(f"invalid {what} {value!r}") from None


def _hostname(value: str) -> str:
    if not isinstance(value, str) or not _HOSTNAME.fullmatch(value):
        raise InvalidArgumentError(f"invalid host or domain name {value!r}")
    return value


def render_resolv_conf(
    nameservers: Sequence[str], search: Sequence[str] = (), options: Sequence[str] = ()
) -> str:
    if not 1 <= len(nameservers) <= MAX_NAMESERVERS:
        raise InvalidArgumentError(f"want 1 to {MAX_NAMESERVERS} nameservers")
    if len(search) > MAX_SEARCH:
        raise InvalidArgumentError(f"at most {MAX_SEARCH} search domains")
    for option in options:
        if not isinstance(option, str) or not _OPTION.fullmatch(option):
            raise InvalidArgumentError(f"invalid resolver option {option!r}")
    lines = [f"nameserver {_address(ns, 'nameserver')}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(_hostname(domain) for domain in search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def render_hosts(entries: Iterable[tuple[str, Sequence[str]]]) -> str:
    lines = []
    for address, names in entries:
        if not names:
            raise InvalidArgumentError(f"hosts entry {address!r} has no names")
        lines.append("\t".join([_address(address, "hosts address"), *map(_hostname, names)]))
    return "\n".join(lines) + "\n"


def _write(base: str, container_id: str, name: str, content: str) -> dict[str, Any]:
    if not isinstance(container_id, str) or not _ID.fullmatch(container_id):
        raise InvalidArgumentError(f"invalid container id {container_id!r}")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    base_fd = os.open(base, flags)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(container_id, 0o755, dir_fd=base_fd)
        dir_fd = os.open(container_id, flags | os.O_NOFOLLOW, dir_fd=base_fd)
    finally:
        os.close(base_fd)
    tmp = f".{name}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=dir_fd,
        )
        with os.fdopen(fd, "w") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    path = os.path.join(base, container_id, name)
    return {"op": f"write_{name.replace('.', '_')}", "path": path, "content": content}


def write_resolv_conf(
    base: str,
    container_id: str,
    nameservers: Sequence[str],
    search: Sequence[str] = (),
    options: Sequence[str] = (),
) -> dict[str, Any]:
    """Write `base/<container_id>/resolv.conf`; returns its path and content."""
    return _write(
        base, container_id, "resolv.conf", render_resolv_conf(nameservers, search, options)
    )


def write_hosts(
    base: str, container_id: str, entries: Iterable[tuple[str, Sequence[str]]]
) -> dict[str, Any]:
    """Write `base/<container_id>/hosts` from (address, [names]) pairs."""
    return _write(base, container_id, "hosts", render_hosts(entries))
