"""Netlink sockets inside a network namespace, without forking.

pyroute2's own netns support forks a helper process; the agent is the subreaper and reaps every
child, so instead a short-lived thread enters the namespace (setns affects only the calling
thread), opens the netlink socket there and leaves. A socket keeps the namespace it was created
in. If leaving fails the thread is the only one affected, and it ends.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import threading

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError

__all__ = ["NetworkFailedError", "netns_path", "open_route_socket"]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_NETNS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class NetworkFailedError(AgentError):
    code = ErrorCode.NETWORK


def netns_path(netns: str) -> str:
    """A namespace name (as `ip netns` makes them) or an absolute path to a namespace file."""
    if netns.startswith("/"):
        return netns
    if not _NETNS_NAME.fullmatch(netns):
        raise InvalidArgumentError(f"invalid network namespace name {netns!r}")
    return os.path.join(NETNS_RUN_DIR, netns)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _socket_in(path: str, result: list[object]) -> None:
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    result.append(
                        socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
                    )
                finally:
                    _setns(own)
            finally:
                os.close(target)
        finally:
            os.close(own)
    except OSError as exc:
        result.append(exc)


def open_route_socket(netns: str | None = None) -> socket.socket:
    """A NETLINK_ROUTE socket in `netns` (None: the agent's own namespace). Blocking: call it
    through `asyncio.to_thread` from the loop."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    path = netns_path(netns)
    result: list[object] = []
    worker = threading.Thread(target=_socket_in, args=(path, result), name="netns-socket")
    worker.start()
    worker.join()
    outcome = result[0] if result else OSError("netns thread failed")
    if isinstance(outcome, socket.socket):
        return outcome
    raise NetworkFailedError(f"cannot open a netlink socket in {path}: {outcome}")
