"""Joining another container's namespaces (a pod's shared IPC, UTS and network): the path the
runtime joins is computed here, from a container the agent itself started, never taken from
the host.

The owner must be a container of this manager whose init has not exited. Its pid cannot be
reused while the agent has not reaped it, and reaping runs on this loop: between the status
check and opening `/proc/<pid>/ns/<type>` (no await) the pid is the agent's own process, and
a pidfd taken in the same step confirms it. The opened namespace file is held until the new
container exists, and then the new container's namespace must be that same inode (checked by
`verify`): what runc joined is what the agent checked, or the container is removed.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError, InvalidStateError
from guestagent.records import field, record

if TYPE_CHECKING:
    from guestagent.containers.manager import ContainerManager

__all__ = ["JoinedNamespaces", "open_joined"]

PROC_NAMES = {"ipc": "ipc", "uts": "uts", "network": "net"}


@record(mutable=True)
class JoinedNamespaces:
    """The namespaces a new container joins: OCI type -> path, and the held files."""

    paths: dict[str, str] = field(default_factory=dict)
    identities: dict[str, tuple[int, int]] = field(default_factory=dict)  # (st_dev, st_ino)
    hostname: str | None = None  # the UTS owner's hostname, when UTS is joined
    fds: list[int] = field(default_factory=list)

    def check_hostname(self, facts: Mapping[str, Any]) -> None:
        """A container in another's UTS namespace has that one's hostname: a spec may name
        it, or none, but no other."""
        hostname = facts["hostname"]
        if self.hostname is not None and hostname and hostname != self.hostname:
            raise InvalidArgumentError(
                f"hostname {hostname!r}: the container joins the UTS namespace of "
                f"{facts['joins']['uts']!r}, whose hostname is {self.hostname!r}",
                details={"path": "hostname"},
            )

    def verify(self, pid: int) -> None:
        """The new container's init (`pid`) is in exactly the namespaces that were checked."""
        for ns, identity in self.identities.items():
            try:
                st = os.stat(f"/proc/{pid}/ns/{PROC_NAMES[ns]}")
                got = (st.st_dev, st.st_ino)
            except OSError as exc:
                got = (-1, exc.errno or 0)
            if got != identity:
                raise AgentError(
                    f"the new container is not in the {ns} namespace the agent checked",
                    code=ErrorCode.RUNTIME,
                )

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def open_joined(manager: ContainerManager, joins: Mapping[str, str]) -> JoinedNamespaces:
    """Open the namespaces `joins` (OCI type -> owner container id) names. Synchronous on
    purpose: nothing may reap the owner between its status check and the open."""
    joined = JoinedNamespaces()
    try:
        for ns, owner_id in sorted(joins.items()):
            owner = manager.get(owner_id)
            if owner.init.status.done():
                raise InvalidStateError(
                    f"joins.{ns}: container {owner_id!r} has exited; its namespace is gone"
                )
            pid = owner.init.pid
            pidfd = os.pidfd_open(pid)
            try:
                fd = os.open(f"/proc/{pid}/ns/{PROC_NAMES[ns]}", os.O_RDONLY | os.O_CLOEXEC)
                joined.fds.append(fd)
                signal.pidfd_send_signal(pidfd, 0)  # still the process the agent started
            finally:
                os.close(pidfd)
            st = os.fstat(fd)
            joined.identities[ns] = (st.st_dev, st.st_ino)
            joined.paths[ns] = f"/proc/{pid}/ns/{PROC_NAMES[ns]}"
            if ns == "uts":
                joined.hostname = _hostname(manager, owner_id)
    except OSError as exc:
        joined.close()
        raise InvalidStateError(f"cannot join the namespaces of {dict(joins)}: {exc}") from None
    except BaseException:
        joined.close()
        raise
    return joined


def _hostname(manager: ContainerManager, owner_id: str) -> str:
    """The hostname the agent wrote into the owner's config.json (its own file)."""
    config = json.loads((manager.get(owner_id).bundle / "config.json").read_text())
    return str(config.get("hostname", ""))
