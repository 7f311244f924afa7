"""Start-up reconciliation: remove what an earlier run of the agent left behind, before serving.

An agent killed mid-request (SIGKILL, OOM, a crash) leaves state no one manages: runtime
containers with a waiting or running init, their cgroups, bundles, mounts under the state
directory, dm devices and loop devices. A new agent on the same state directory starts empty,
so it must not serve next to them: same ids would stack mounts on old ones and an old container
would run unmanaged. `reconcile` finds each kind, tears it down (kill, delete, unmount, detach,
remove), and says what it found; anything it cannot remove is a failure and the agent refuses
to start (fail closed). It only touches what is provably this agent's: paths and runtime roots
under its state directory, the cgroups of the container ids its state directory knows, and
dm/loop devices named with its state directory's tag.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from guestagent.containers import children
from guestagent.containers.stats import cgroup_dirs
from guestagent.errors import AgentError
from guestagent.records import field, record
from guestagent.storage import loop
from guestagent.storage.dm import DmClient
from guestagent.storage.mounts import umount
from guestagent.storage.registry import DM_CONTROL, device_tag

__all__ = ["Reconciliation", "reconcile"]

log = logging.getLogger("guestagent.reconcile")
# What the agent keeps under its state directory and rebuilds at start.
STATE_SUBDIRS = ("storage", "containers", "attestation")


@record(mutable=True)
class Reconciliation:
    found: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"found": list(self.found), "failures": list(self.failures)}

    def attempt(self, what: str, action: Any, *args: Any) -> bool:
        self.found.append(what)
        try:
            action(*args)
        except (AgentError, OSError) as exc:
            text = exc.message if isinstance(exc, AgentError) else str(exc)
            self.failures.append(f"{what}: {text}")
            return False
        return True


def reconcile(state_dir: Path, cgroup_parent: str | None) -> Reconciliation:
    """Tear down an earlier run's leftovers; the caller refuses to serve if any failed.

    `cgroup_parent` None: this agent runs no containers, so no cgroup is its to remove.
    """
    state_dir = state_dir.resolve()
    result = Reconciliation()
    ids = _container_ids(state_dir / "containers")
    _containers(state_dir / "containers", result)
    if cgroup_parent is not None:
        _cgroups(cgroup_parent, ids, result)
    _mounts(state_dir, result)
    tag = device_tag(str(state_dir / "storage"))
    _dm_devices(tag, result)
    _loops(state_dir, tag, result)
    if not result.failures:
        for name in STATE_SUBDIRS:
            path = state_dir / name
            if path.exists():
                result.attempt(f"directory {path}", shutil.rmtree, path)
    if result.found:
        log.warning("removed what an earlier run left behind", extra=result.describe())
    return result


def _containers(root: Path, result: Reconciliation) -> None:
    """Containers in every runtime root of ours (state/containers/<runtime name>/<id>)."""
    if not root.is_dir():
        return
    for runtime_root in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "bundles"):
        binary = shutil.which(runtime_root.name)
        for entry in sorted(p for p in runtime_root.iterdir() if p.is_dir()):
            what = f"container {entry.name} ({runtime_root.name})"
            result.attempt(what, _delete_container, binary, runtime_root, entry)


def _delete_container(binary: str | None, runtime_root: Path, entry: Path) -> None:
    if binary is not None:
        argv = [binary, "--root", str(runtime_root), "delete", "--force", entry.name]
        done = children.run(argv, timeout=30)
        if done.returncode == 0 and not entry.exists():
            return
    # No runtime, or it could not: kill through the cgroup below and drop its state.
    shutil.rmtree(entry)


def _container_ids(root: Path) -> set[str]:
    """Ids this state directory knows (bundles are written before `runtime create`), so only
    their cgroups are touched, never another agent's under a shared parent."""
    if not root.is_dir():
        return set()
    return {e.name for d in root.iterdir() if d.is_dir() for e in d.iterdir() if e.is_dir()}


def _cgroups(cgroup_parent: str, ids: set[str], result: Reconciliation) -> None:
    for container_id in sorted(ids):
        for path in cgroup_dirs(f"/{cgroup_parent}/{container_id}"):
            result.attempt(f"cgroup {path}", _kill_and_remove_cgroup, path)


def _kill_and_remove_cgroup(path: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        pids = _cgroup_pids(path)
        if not pids:
            break
        if time.monotonic() > deadline:
            raise AgentError(f"processes {pids[:8]} in {path} do not die")
        kill_file = path / "cgroup.kill"
        if kill_file.exists():
            kill_file.write_text("1")
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            sub.rmdir()
    path.rmdir()


def _cgroup_pids(path: Path) -> list[int]:
    pids: list[int] = []
    for procs in [path / "cgroup.procs", *path.rglob("cgroup.procs")]:
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return sorted(set(pids))


def _mounts(state_dir: Path, result: Reconciliation) -> None:
    """Every mount under the state directory, the most recent (topmost) first."""
    prefix = str(state_dir) + "/"
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    for point in reversed([p for p in points if p.startswith(prefix)]):
        decoded = point.encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        result.attempt(f"mount {decoded}", umount, decoded)


def _dm_devices(tag: str, result: Reconciliation) -> None:
    names = []
    for dm_dir in Path("/sys/block").glob("dm-*/dm/name"):
        with contextlib.suppress(OSError):
            name = dm_dir.read_text().strip()
            if name.startswith(f"ga-{tag}-"):
                names.append(name)
    if not names or not os.path.exists(DM_CONTROL):
        return
    client = DmClient()
    try:
        for name in sorted(names, reverse=True):  # scratch crypt over integrity: upper first
            result.attempt(f"dm device {name}", client.remove, name)
    finally:
        client.close()


def _loops(state_dir: Path, tag: str, result: Reconciliation) -> None:
    """Loop devices over files under the state dir or over this agent's sealed layer copies."""
    for entry in sorted(Path("/sys/block").glob("loop*")):
        with contextlib.suppress(ValueError):
            number = int(entry.name[4:])
            backing = loop.backing_file(number) or ""
            ours = backing.startswith(str(state_dir) + "/") or backing.startswith(
                f"/memfd:ga-{tag}-"
            )
            if ours:
                device = loop.LoopDevice(f"/dev/loop{number}", number, None, backing)
                result.attempt(f"loop device {device.path} ({backing})", loop.detach, device)
