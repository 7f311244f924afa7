"""Host requests that try to escape the policy: each is refused with the right code and rule.

Table-driven: to add a regression, append an `Escape` to ESCAPES. Each case runs against one
agent (simulated SNP, the reliability policy adopted, both layers mounted) and names the
request, where it is sent, and the code and rule the refusal must carry. After every refusal
the containers and mounts are exactly what they were, and the agent still answers.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from guestagent.client import Client, RemoteError
from guestagent.containers._specfields import KNOWN_CAPABILITIES
from guestagent.demo import assets
from tests.integration.agent_process import AgentProcess
from tests.reliability.world import (
    SLEEP_COMMAND,
    ReliabilityWorld,
    agent_with_policy,
    prepare_overlay,
    spec,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime]

DENIED = "policy.denied"


@dataclass
class Scene:
    """The agent under attack, and containers in each state for the cases to aim at."""

    world: ReliabilityWorld
    agent: AgentProcess
    client: Client
    console_uri: str
    running: str = "sleeping"  # a started sleeper (signals: 15 only)
    created: str = "created"  # created, never started
    demo: str = "demo"  # the started demo container (exec: cat /etc/motd only)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self) -> str:
        """A new container id with a verified overlay: a create would be ruled on its spec."""
        cid = f"fresh{next(self._ids)}"
        prepare_overlay(self.client, cid)
        return cid

    @property
    def shared(self) -> Path:
        return self.agent.workdir / "state" / "shared"


def _spec(**changes: Any) -> Callable[[Scene], dict[str, Any]]:
    """create_container on a fresh overlay with a spec derived from the allowed one."""

    def build(scene: Scene) -> dict[str, Any]:
        host_spec = spec(changes.pop("args", None), changes.pop("env", None))
        for path, value in changes.items():
            _set(host_spec, path.split("__"), value)
        return {"container_id": scene.fresh(), "spec": host_spec}

    return build


def _set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    if callable(value):
        tree[path[-1]] = value(tree.get(path[-1]))
    else:
        tree[path[-1]] = value


def _with_caps(*extra: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda caps: {k: [*v, *extra] for k, v in caps.items()}


ALL_CAPS = sorted(KNOWN_CAPABILITIES)
NS = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]


def _bind(source: str, destination: str = "/mnt") -> list[dict[str, Any]]:
    return [{"destination": destination, "source": source, "type": "bind", "options": ["rbind"]}]


@dataclass(frozen=True)
class Escape:
    name: str
    op: str
    args: Callable[[Scene], dict[str, Any]] | dict[str, Any]
    code: str
    rule: str | None
    channel: str = "agent"  # agent | console | no-hello
    says: str = ""  # a fragment the message must contain


def _const(value: dict[str, Any]) -> Callable[[Scene], dict[str, Any]]:
    return lambda scene: value


ESCAPES = [
    # -- layers: the hashes are measured, the order is the policy's ---------------------
    Escape(
        "layer reorder",
        "mount_overlay",
        lambda s: {"container_id": "reorder", "layer_ids": ["extra", "base"]},
        DENIED,
        "mount_overlay.layer_paths",
    ),
    Escape(
        "layer subset of a two-layer container",
        "mount_overlay",
        lambda s: {"container_id": "subset", "layer_ids": ["extra"]},
        DENIED,
        "mount_overlay.layer_paths",
    ),
    Escape(
        "layer swapped for a rebuilt one",
        "mount_layer",
        lambda s: {"layer_id": "rebuilt", "source": str(s.world.layer_dir / "rebuilt.layer")},
        DENIED,
        "mount_device.device_hash",
    ),
    Escape(
        "hash-less layer (no verity superblock)",
        "mount_layer",
        lambda s: {"layer_id": "hashless", "source": str(s.world.layer_dir / "hashless.img")},
        "storage.integrity",
        None,
        says="no verity superblock",
    ),
    Escape(
        "layer from outside the layer directories",
        "mount_layer",
        {"layer_id": "etc", "source": "/etc/hostname"},
        "protocol.invalid_argument",
        None,
        says="must be a file under",
    ),
    Escape(
        "layer id as a path",
        "mount_layer",
        lambda s: {"layer_id": "../base", "source": str(s.world.layer)},
        "protocol.invalid_argument",
        None,
    ),
    Escape(
        "unmount a layer an overlay uses",
        "unmount_layer",
        {"layer_id": "base"},
        DENIED,
        "unmount_device.target",
    ),
    # -- environment ---------------------------------------------------------------------
    Escape(
        "LD_PRELOAD injection",
        "create_container",
        _spec(env=[assets.PATH, "LD_PRELOAD=/tmp/evil.so"]),
        DENIED,
        "create_container.env",
        says="LD_PRELOAD",
    ),
    Escape(
        "PATH override",
        "create_container",
        _spec(env=["PATH=/tmp/evil:/bin"]),
        DENIED,
        "create_container.env",
    ),
    Escape(
        "Arabic-Indic digits against PORT=\\d{2,5}",
        "create_container",
        _spec(env=[assets.PATH, "PORT=\u0668\u0660\u0668\u0660"]),
        DENIED,
        "create_container.env",
        says="PORT",
    ),
    Escape(
        "fullwidth digits against PORT=\\d{2,5}",
        "create_container",
        _spec(env=[assets.PATH, "PORT=\uff18\uff10\uff18\uff10"]),
        DENIED,
        "create_container.env",
        says="PORT",
    ),
    Escape(
        "30,000 commas against FOO=.*,.*,.*,.*; (minutes of backtracking in Python's re)",
        "create_container",
        _spec(env=[assets.PATH, "FOO=" + "," * 30000]),
        DENIED,
        "create_container.env",
        says="FOO",
    ),
    Escape(
        "required PATH missing",
        "create_container",
        _spec(env=["HOME=/"]),
        DENIED,
        "create_container.env",
    ),
    # -- argv ------------------------------------------------------------------------------
    Escape(
        "extra argument",
        "create_container",
        _spec(args=["/bin/true", "-x"]),
        DENIED,
        "create_container.argv",
    ),
    Escape(
        "different argv[0]",
        "create_container",
        _spec(args=["/bin/sh"]),
        DENIED,
        "create_container.argv",
    ),
    Escape(
        "shell wrapping",
        "create_container",
        _spec(args=["/bin/sh", "-c", "/bin/true"]),
        DENIED,
        "create_container.argv",
    ),
    Escape(
        "exec of an unlisted command",
        "exec_process",
        lambda s: {"container_id": s.demo, "process": assets.exec_process(["/bin/sh"])},
        DENIED,
        "exec_in_container.argv",
    ),
    Escape(
        "exec with an extra argument",
        "exec_process",
        lambda s: {
            "container_id": s.demo,
            "process": assets.exec_process([*assets.DEMO_EXEC, "/etc/passwd"]),
        },
        DENIED,
        "exec_in_container.argv",
    ),
    Escape(
        "external process",
        "exec_external",
        {"argv": ["/bin/sh", "-c", "id"]},
        DENIED,
        "exec_external.argv",
    ),
    # -- mounts in the spec ----------------------------------------------------------------
    Escape(
        "bind with ../ in the source",
        "create_container",
        _spec(mounts=_bind("/run/../etc")),
        DENIED,
        "create_container.mounts",
    ),
    Escape(
        "bind of /",
        "create_container",
        _spec(mounts=_bind("/")),
        DENIED,
        "create_container.mounts",
    ),
    Escape(
        "bind of /proc",
        "create_container",
        _spec(mounts=_bind("/proc", "/host-proc")),
        DENIED,
        "create_container.mounts",
    ),
    Escape(
        "proc without its hardening options",
        "create_container",
        _spec(mounts=[{"destination": "/proc", "source": "proc", "type": "proc", "options": []}]),
        DENIED,
        "create_container.mounts",
    ),
    # -- file copies -----------------------------------------------------------------------
    Escape(
        "copy to ../../etc/passwd",
        "copy_file",
        {"destination": "../../etc/passwd", "data": b"root::0:0::/:/bin/sh\n"},
        DENIED,
        "copy_file.destination",
    ),
    Escape(
        "copy through .. inside an allowed prefix",
        "copy_file",
        {"destination": "/config/../../etc/passwd", "data": b"x"},
        DENIED,
        "copy_file.destination",
    ),
    Escape(
        "copy outside the allowed destinations",
        "copy_file",
        {"destination": "/etc/passwd", "data": b"x"},
        DENIED,
        "copy_file.destination",
    ),
    Escape(
        "copy a setuid file",
        "copy_file",
        {"destination": "/config/suid", "data": b"x", "mode": 0o4755},
        DENIED,
        "copy_file.mode",
    ),
    Escape(
        "copy through a symlinked directory",
        "copy_file",
        {"destination": "/config/linkdir/passwd", "data": b"x"},
        "storage.failed",
        None,
        says="symlink",
    ),
    # -- hooks, namespaces, privilege --------------------------------------------------------
    Escape(
        "prestart hook",
        "create_container",
        _spec(hooks={"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "id"]}]}),
        DENIED,
        "create_container.hooks",
    ),
    Escape(
        "createRuntime hook",
        "create_container",
        _spec(hooks={"createRuntime": [{"path": "/bin/true"}]}),
        DENIED,
        "create_container.hooks",
    ),
    Escape(
        "host network namespace by path",
        "create_container",
        _spec(linux__namespaces=[*NS, {"type": "network", "path": "/proc/1/ns/net"}]),
        DENIED,
        "create_container.host_namespaces",
    ),
    Escape(
        "no network namespace (host network)",
        "create_container",
        _spec(linux__namespaces=NS),
        DENIED,
        "create_container.namespaces",
    ),
    Escape(
        "no pid namespace",
        "create_container",
        _spec(linux__namespaces=[{"type": t} for t in ("network", "ipc", "uts", "mount")]),
        DENIED,
        "create_container.namespaces",
    ),
    Escape(
        "CAP_SYS_ADMIN",
        "create_container",
        _spec(process__capabilities=_with_caps("CAP_SYS_ADMIN")),
        DENIED,
        "create_container.privileged",
        says="CAP_SYS_ADMIN",
    ),
    Escape(
        "every capability",
        "create_container",
        _spec(process__capabilities={k: ALL_CAPS for k in ("bounding", "effective", "permitted")}),
        DENIED,
        "create_container.privileged",
    ),
    Escape(
        "an extra capability",
        "create_container",
        _spec(process__capabilities=_with_caps("CAP_NET_ADMIN")),
        DENIED,
        "create_container.capabilities",
    ),
    Escape(
        "a block device",
        "create_container",
        _spec(linux__devices=[{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]),
        DENIED,
        "create_container.devices",
    ),
    Escape(
        "device cgroup allowing everything",
        "create_container",
        _spec(linux__resources={"devices": [{"allow": True, "access": "rwm"}]}),
        DENIED,
        "create_container.privileged",
    ),
    Escape(
        "no_new_privileges off",
        "create_container",
        _spec(process__noNewPrivileges=False),
        DENIED,
        "create_container.no_new_privileges",
    ),
    Escape(
        "another uid",
        "create_container",
        _spec(process__user={"uid": 1000, "gid": 0}),
        DENIED,
        "create_container.user",
    ),
    Escape(
        "a terminal",
        "create_container",
        _spec(process__terminal=True),
        DENIED,
        "create_container.terminal",
    ),
    Escape(
        "a sysctl",
        "create_container",
        _spec(linux__sysctl={"kernel.core_pattern": "|/tmp/x"}),
        DENIED,
        "create_container.sysctl",
    ),
    Escape(
        "uid mappings",
        "create_container",
        _spec(linux__uidMappings=[{"containerID": 0, "hostID": 0, "size": 65536}]),
        DENIED,
        "create_container.unsupported_fields",
    ),
    Escape(
        "rlimits the policy does not list",
        "create_container",
        _spec(process__rlimits=[{"type": "RLIMIT_NOFILE", "hard": 1 << 20, "soft": 1 << 20}]),
        DENIED,
        "create_container.rlimits",
    ),
    # -- issue 12: every spec field reaches the bundle only through a rule ---------------------
    Escape(
        "an allowed device path declared as /dev/mem's numbers",
        "create_container",
        _spec(linux__devices=[{"path": "/dev/null", "type": "c", "major": 1, "minor": 1}]),
        DENIED,
        "create_container.devices",
        says="linux.devices[0].minor",
    ),
    Escape(
        "a device path the policy does not name",
        "create_container",
        _spec(linux__devices=[{"path": "/dev/zero", "type": "c"}]),
        DENIED,
        "create_container.devices",
        says="/dev/zero",
    ),
    Escape(
        "masking a file of the verified layer",
        "create_container",
        _spec(linux__maskedPaths=["/etc/motd"]),
        DENIED,
        "create_container.masked_paths",
        says="/etc/motd",
    ),
    Escape(
        "making a path read-only the policy does not list",
        "create_container",
        _spec(linux__readonlyPaths=["/bin"]),
        DENIED,
        "create_container.readonly_paths",
    ),
    Escape(
        "a umask other than the policy's",
        "create_container",
        _spec(process__user={"uid": 0, "gid": 0, "umask": 0}),
        DENIED,
        "create_container.umask",
    ),
    Escape(
        "a hostname the policy does not allow",
        "create_container",
        _spec(hostname="evil"),
        DENIED,
        "create_container.hostname",
    ),
    Escape(
        "an oomScoreAdj below the policy's range",
        "create_container",
        _spec(process__oomScoreAdj=-1000),
        DENIED,
        "create_container.oom_score_adj",
    ),
    Escape(
        "a domain name (no rule applies one)",
        "create_container",
        _spec(domainname="corp.example"),
        DENIED,
        "create_container.unsupported_fields",
    ),
    Escape(
        "two values for one variable",
        "create_container",
        _spec(env=[assets.PATH, "PATH=/tmp"]),
        "protocol.invalid_argument",
        None,
        says="duplicate variable PATH",
    ),
    Escape(
        "a container id without a verified rootfs",
        "create_container",
        {"container_id": "nowhere", "spec": spec()},
        DENIED,
        "create_container.container_id",
    ),
    Escape(
        "creating a container twice",
        "create_container",
        lambda s: {"container_id": s.created, "spec": spec(SLEEP_COMMAND)},
        DENIED,
        "create_container.container_id",
    ),
    # -- signals -----------------------------------------------------------------------------
    Escape(
        "SIGKILL where only SIGTERM is allowed",
        "signal_process",
        lambda s: {"container_id": s.running, "signal": 9},
        DENIED,
        "signal_container_process.signal",
    ),
    Escape(
        "signal to a container that was never started",
        "signal_process",
        lambda s: {"container_id": s.created, "signal": 15},
        DENIED,
        "signal_container_process.container_id",
    ),
    Escape(
        "signal to a container that does not exist",
        "signal_process",
        {"container_id": "someone-else", "signal": 15},
        "state.not_found",
        None,
    ),
    Escape(
        "start twice",
        "start_container",
        lambda s: {"container_id": s.running},
        DENIED,
        "start_container.container_id",
    ),
    # -- guest-wide ----------------------------------------------------------------------------
    Escape(
        "network change",
        "add_address",
        {"interface": "eth0", "address": "10.0.0.2/24"},
        DENIED,
        "network_change.allow_network_changes",
    ),
    Escape("dump stacks", "dump_stacks", {}, DENIED, "dump_stacks.allow_dump_stacks"),
    Escape("read logs", "get_logs", {}, DENIED, "runtime_logging.allow_runtime_logging"),
    Escape(
        "set_policy twice",
        "set_policy",
        lambda s: {"policy": s.world.policy.read_bytes()},
        "policy.already_set",
        None,
    ),
    # -- the console is read-only; the handshake comes first -----------------------------------
    *(
        Escape(f"console write: {op}", op, args, "protocol.unknown_op", None, channel="console")
        for op, args in [
            ("create_container", {"container_id": "c", "spec": {}}),
            ("mount_layer", {"layer_id": "x", "source": "/dev/null"}),
            ("set_policy", {"policy": b"{}"}),
            ("copy_file", {"destination": "/config/x", "data": b"x"}),
            ("signal_process", {"container_id": "sleeping", "signal": 9}),
            ("delete_container", {"container_id": "sleeping"}),
            ("exec_process", {"container_id": "demo", "process": {}}),
        ]
    ),
    Escape(
        "console command the policy does not list",
        "processes",
        {},
        DENIED,
        "console_processes.command",
        channel="console",
    ),
    Escape(
        "request before hello",
        "create_container",
        {"container_id": "c", "spec": {}},
        "protocol.handshake_required",
        None,
        channel="no-hello",
    ),
    Escape("ping before hello", "ping", {}, "protocol.handshake_required", None, "no-hello"),
]


def _rebuilt_layer(world: ReliabilityWorld) -> None:
    """The same tree with one file changed, rebuilt with its own verity tree."""
    from guestagent.storage.layer import build_layer

    target = world.layer_dir / "rebuilt.layer"
    if target.exists():
        return
    work = world.base / "rebuilt"
    root = assets.build_busybox_rootfs(work / "rootfs")
    (root / "etc" / "motd").write_text("attacker's motd\n")
    build_layer(str(root), str(target), work_dir=str(work))


def _hashless_layer(world: ReliabilityWorld) -> None:
    import subprocess

    source = world.base / "hashless-src"
    source.mkdir(exist_ok=True)
    (source / "file").write_text("no tree\n")
    subprocess.run(
        ["mkfs.erofs", str(world.layer_dir / "hashless.img"), str(source)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def scene(world: ReliabilityWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    _rebuilt_layer(world)
    _hashless_layer(world)
    console_dir = tmp_path_factory.mktemp("console")
    console_uri = f"unix://{console_dir}/c.sock"
    with agent_with_policy(world, "--console", console_uri) as agent:
        client = Client.connect(agent.uri)
        s = Scene(world, agent, client, console_uri)
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        client.call("mount_layer", {"layer_id": "extra", "source": str(world.extra)})
        for cid, command in [(s.running, SLEEP_COMMAND), (s.created, SLEEP_COMMAND)]:
            prepare_overlay(client, cid)
            client.call("create_container", {"container_id": cid, "spec": spec(command)})
        client.call("start_container", {"container_id": s.running})
        prepare_overlay(client, s.demo)
        client.call(
            "create_container",
            {"container_id": s.demo, "spec": assets.host_spec(), "stdin": True},
        )
        client.call("start_container", {"container_id": s.demo})
        (s.shared / "config").mkdir(parents=True, exist_ok=True)
        outside = world.base / "outside"
        outside.mkdir(exist_ok=True)
        (s.shared / "config" / "linkdir").symlink_to(outside)
        try:
            yield s
        finally:
            client.close()


def _send(scene: Scene, escape: Escape) -> Any:
    args = escape.args(scene) if callable(escape.args) else escape.args
    if escape.channel == "agent":
        return scene.client.call(escape.op, args)
    if escape.channel == "console":
        with Client.connect(scene.console_uri) as console:
            return console.call(escape.op, args)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(scene.agent.socket_path)
    with Client(sock) as raw:
        return raw.call(escape.op, args)


def _observable(scene: Scene) -> tuple[Any, ...]:
    client = scene.client
    containers = [
        (c["container_id"], c["status"]) for c in client.call("list_containers")["containers"]
    ]
    engine = client.status()["policy"]["engine_state"]
    return containers, engine, sorted(os.listdir(scene.shared / "config"))


@pytest.mark.parametrize("escape", ESCAPES, ids=[e.name for e in ESCAPES])
def test_escape_is_refused_with_its_rule(scene: Scene, escape: Escape) -> None:
    before = _observable(scene)
    with pytest.raises(RemoteError) as refused:
        _send(scene, escape)
    error = refused.value
    assert (error.code, error.rule) == (escape.code, escape.rule), error.message
    assert escape.says in error.message
    assert len(error.message) <= 3072
    engine_before = before[1]
    after = _observable(scene)
    # Nothing changed but the fresh overlay the case may have prepared.
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert after[1]["created"] == engine_before["created"]
    assert after[1]["started"] == engine_before["started"]
    assert scene.client.ping(b"alive") == {"payload": b"alive"}


def test_the_refused_copy_wrote_nothing_outside(scene: Scene) -> None:
    outside = scene.world.base / "outside"
    assert list(outside.iterdir()) == []
    # A symlink planted where the file goes is replaced, never written through.
    target = scene.world.base / "outside-file"
    target.write_text("untouched\n")
    (scene.shared / "config" / "planted").symlink_to(target)
    scene.client.call("copy_file", {"destination": "/config/planted", "data": b"evil"})
    assert target.read_text() == "untouched\n"
    assert not (scene.shared / "config" / "planted").is_symlink()
    # And a plain copy to an allowed destination still works.
    written = scene.client.call("copy_file", {"destination": "/config/ok", "data": b"fine"})
    assert Path(written["path"]).read_bytes() == b"fine"


def test_the_table_covers_every_family() -> None:
    rules = {e.rule.split(".")[0] for e in ESCAPES if e.rule}
    assert {
        "mount_overlay",
        "mount_device",
        "create_container",
        "exec_in_container",
        "copy_file",
        "signal_container_process",
        "network_change",
    } <= rules
    assert {e.channel for e in ESCAPES} == {"agent", "console", "no-hello"}
