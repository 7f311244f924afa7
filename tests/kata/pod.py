"""A pod as a Kata shim would drive it: the policy, the specs and the call sequence, shared by
the Python test, the Go interop test and the bench."""

from __future__ import annotations

import json
import re
from typing import Any

from guestagent.demo import assets
from guestagent.kata.pb import agent_pb2, oci_pb2

PAUSE = ["/bin/sleep", "1000000"]
APP = ["/bin/sh", "-c", "echo hello from the pod; read line; echo bye $line >&2; exit 3"]
EXEC = ["/bin/cat", "/etc/motd"]
READ_HOSTNAME = ["/bin/cat", "/etc/hostname"]
# What a container sees of its pod: its IPC and UTS namespaces and its hostname.
NS_REPORT = ["/bin/sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname"]
SHARED = "/run/kata-containers/shared/containers/"
# containerd's default spec: RLIMIT_NOFILE, a /run tmpfs; kubelet's BestEffort oomScoreAdj.
NOFILE = 1024
OOM_SCORE_ADJ = 1000
RUN_TMPFS = ["nosuid", "strictatime", "mode=755", "size=65536k"]
HOSTNAME_BIND = ["rbind", "rprivate", "ro"]
# Doubles a shell variable until the memory limit's OOM killer ends it.
HOG = ["/bin/sh", "-c", "a=x; while true; do a=$a$a; done"]
SANDBOX_ID = "pod1"


def pod_policy(layer_hash: str, state_dir: str = "/run/guestagent", **flags: Any) -> bytes:
    """The pod's policy for an agent whose state directory is `state_dir` (CopyFile's files
    are in its `shared` directory, and the policy names exactly that place)."""
    shared_copy = re.escape(state_dir + "/shared" + SHARED)

    def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "layers": [layer_hash],
            "command": command,
            "env_rules": [{"pattern": assets.PATH, "strategy": "string", "required": True}],
            "working_dir": "/",
            "user": {"uid": 0, "gid": 0, "additional_gids": []},
            "capabilities": None,
            "no_new_privileges": True,
            "signals": [15, 9],
            "allow_stdio_access": True,
            # What containerd and the Kata shim put in every spec, ruled here:
            "hostname": "pod",
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": NOFILE, "hard": NOFILE}],
            "oom_score_adj": {"min": 0, "max": OOM_SCORE_ADJ},
            "host_network": True,  # Kata's one VM-wide network namespace (the shim drops netns)
            "mounts": [
                {"type": "tmpfs", "source": "tmpfs", "destination": "/run", "options": RUN_TMPFS},
                {
                    "type": "bind",
                    # CopyFile's hostname file, in the agent's shared directory
                    "source": shared_copy + "[a-z0-9]+-hostname",
                    "destination": "/etc/hostname",
                    "options": HOSTNAME_BIND,
                },
            ],
            **extra,
        }

    policy = {
        "version": 1,
        "containers": [
            container("pause", PAUSE, exec_processes=[{"command": NS_REPORT}]),
            container(
                "app",
                APP,
                exec_processes=[
                    {"command": EXEC, "signals": [15]},
                    {"command": READ_HOSTNAME, "signals": []},
                    {"command": NS_REPORT},
                ],
                # The pod: app joins the pause container's IPC and UTS namespaces.
                joins={"ipc": "pause", "uts": "pause"},
            ),
            container("hog", HOG),
        ],
        "allow_properties_access": True,
        "sandbox": {"id": "[a-z0-9]+", "hostname": "pod"},  # CreateSandbox's id and hostname
        "copy_file": {
            "destinations": [
                SHARED + "[a-z0-9]+-(hostname|hosts|resolv[.]conf)",
                # A projected volume: a timestamped directory, ..data and per-key symlinks.
                SHARED + "[a-z0-9]+-token(/[.a-z0-9_]+){1,2}",
            ],
            "symlinks": True,
            "uid": {"min": 0, "max": 1000},
            "gid": {"min": 0, "max": 1000},
        },
        **flags,
    }
    return (json.dumps(policy, indent=2) + "\n").encode()


def process(args: list[str]) -> oci_pb2.Process:
    caps = sorted(assets.CAPS)
    return oci_pb2.Process(
        User=oci_pb2.User(UID=0, GID=0),
        Args=args,
        Env=[assets.PATH],
        Cwd="/",
        Capabilities=oci_pb2.LinuxCapabilities(Bounding=caps, Effective=caps, Permitted=caps),
        NoNewPrivileges=True,
    )


def spec(cid: str, args: list[str]) -> oci_pb2.Spec:
    """As the Kata shim sends it: containerd's defaults, network namespace removed."""
    init = process(args)
    init.Rlimits.add(Type="RLIMIT_NOFILE", Hard=NOFILE, Soft=NOFILE)
    init.OOMScoreAdj = OOM_SCORE_ADJ
    return oci_pb2.Spec(
        Version="1.0.2",
        Process=init,
        Root=oci_pb2.Root(Path=f"/run/kata-containers/{cid}/rootfs"),
        Hostname="pod",
        Mounts=[
            oci_pb2.Mount(destination="/run", source="tmpfs", type="tmpfs", options=RUN_TMPFS),
            oci_pb2.Mount(
                destination="/etc/hostname",
                source=hostname_path(cid),
                type="bind",
                options=HOSTNAME_BIND,
            ),
        ],
        Linux=oci_pb2.Linux(
            Namespaces=[oci_pb2.LinuxNamespace(Type=t) for t in ("pid", "ipc", "uts", "mount")]
        ),
    )


def hostname_path(cid: str) -> str:
    return f"{SHARED}{cid}-hostname"


def copy_hostname(cid: str) -> agent_pb2.CopyFileRequest:
    data = b"pod\n"
    return agent_pb2.CopyFileRequest(
        path=hostname_path(cid),
        file_size=len(data),
        file_mode=0o100644,
        dir_mode=0o755,
        data=data,
    )


def create_request(
    cid: str, args: list[str], layer_source: str
) -> agent_pb2.CreateContainerRequest:
    return agent_pb2.CreateContainerRequest(
        container_id=cid,
        exec_id=cid,
        storages=[
            agent_pb2.Storage(
                driver="blk",
                source=layer_source,
                fstype="erofs",
                options=["ro"],
                mount_point=f"/run/kata-containers/{cid}/layer0",
            )
        ],
        OCI=spec(cid, args),
    )
