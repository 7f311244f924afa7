"""A pod as a Kata shim would drive it: the policy, the specs and the call sequence, shared by
the Python test, the Go interop test and the bench."""

from __future__ import annotations

import json
from typing import Any

from guestagent.demo import assets
from guestagent.kata.pb import agent_pb2, oci_pb2

PAUSE = ["/bin/sleep", "1000000"]
APP = ["/bin/sh", "-c", "echo hello from the pod; read line; echo bye $line >&2; exit 3"]
EXEC = ["/bin/cat", "/etc/motd"]
# Doubles a shell variable until the memory limit's OOM killer ends it.
HOG = ["/bin/sh", "-c", "a=x; while true; do a=$a$a; done"]
SANDBOX_ID = "pod1"


def pod_policy(layer_hash: str, **flags: Any) -> bytes:
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
            **extra,
        }

    policy = {
        "version": 1,
        "containers": [
            container("pause", PAUSE),
            container("app", APP, exec_processes=[{"command": EXEC, "signals": [15]}]),
            container("hog", HOG),
        ],
        "allow_properties_access": True,
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


def spec(args: list[str], hostname: str = "pod") -> oci_pb2.Spec:
    return oci_pb2.Spec(
        Version="1.0.2",
        Process=process(args),
        Root=oci_pb2.Root(Path=f"/run/kata-containers/{hostname}/rootfs", Readonly=False),
        Hostname=hostname,
        Linux=oci_pb2.Linux(
            Namespaces=[
                oci_pb2.LinuxNamespace(Type=t) for t in ("pid", "network", "ipc", "uts", "mount")
            ]
        ),
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
        OCI=spec(args),
    )
