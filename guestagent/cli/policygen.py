"""`guestagent policy gen`: a policy, and the OCI specs it accepts, from OCI image layouts.

Each image's layers are built into verity layer images (the same bytes and root hashes the
guest will compute), and the image config gives the command, environment, working directory,
user and stop signal. The result is a starting point that the operator tightens: every
environment variable is an exact string, nothing privileged is granted, and stdio stays
closed unless asked for. Beside the policy, per container, go the runtime spec a host sends
with `create_container` and the process of each allowed exec: the policy accepts them as
written (docs/walkthrough.md drives them with `guestagent ctl`).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from guestagent.capabilities import DEFAULT_UNPRIVILEGED_CAPABILITIES
from guestagent.errors import InvalidArgumentError
from guestagent.policy.document import parse_policy
from guestagent.records import record
from guestagent.storage.oci import image_layer_hashes, read_image_layout

__all__ = [
    "Generated",
    "container_entry",
    "container_spec",
    "exec_process_spec",
    "finish",
    "generate",
    "generate_policy",
    "numeric_user",
]

_NAMESPACES = ("pid", "network", "ipc", "uts", "mount")


def numeric_user(user: str) -> dict[str, Any]:
    """OCI config `User` as uid[:gid]; names cannot be resolved without the image's passwd."""
    uid_text, _, gid_text = (user or "0").partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else uid if user else 0
    except ValueError:
        raise InvalidArgumentError(
            f"image user {user!r} is not numeric: give it as uid[:gid] with --user"
        ) from None
    return {"uid": uid, "gid": gid, "additional_gids": []}


def _signal_number(name: str) -> int:
    """An image's StopSignal ("SIGQUIT", "QUIT" or "3") as a number."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise InvalidArgumentError(f"image StopSignal {name!r} is not a signal") from None


def container_entry(
    layout: str,
    layers_dir: str,
    *,
    name: str | None = None,
    manifest: str | None = None,
    user: str | None = None,
    allow_stdio: bool = False,
) -> dict[str, Any]:
    image = read_image_layout(layout, manifest)
    name = name or Path(layout.rstrip("/")).name
    work = os.path.join(layers_dir, name)
    os.makedirs(work, exist_ok=True)
    hashes = image_layer_hashes(layout, work, manifest)
    config = image.config
    if not config.argv:
        raise InvalidArgumentError(f"{layout}: the image config has no Entrypoint or Cmd")
    # The stop signal, then SIGKILL: what a host needs to stop the container.
    stop = _signal_number(config.stop_signal) if config.stop_signal else int(signal.SIGTERM)
    return {
        "name": name,
        "layers": hashes,
        "command": config.argv,
        "env_rules": [{"pattern": e, "strategy": "string", "required": True} for e in config.env],
        "working_dir": config.working_dir or "/",
        "user": numeric_user(user if user is not None else config.user),
        "capabilities": None,
        "no_new_privileges": True,
        "exec_processes": [],
        "signals": sorted({stop, int(signal.SIGKILL)}),
        "allow_stdio_access": allow_stdio,
    }


def _process(entry: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """The OCI `process` the policy entry allows: its argv, env, cwd, user, the runtime
    default capabilities (the entry grants no others) and no_new_privileges."""
    caps = sorted(DEFAULT_UNPRIVILEGED_CAPABILITIES)
    user = entry["user"]
    return {
        "terminal": False,
        "user": {
            "uid": user["uid"],
            "gid": user["gid"],
            **({"additionalGids": user["additional_gids"]} if user["additional_gids"] else {}),
        },
        "args": list(argv),
        "env": [rule["pattern"] for rule in entry["env_rules"] if rule["strategy"] == "string"],
        "cwd": entry["working_dir"],
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": True,
    }


def container_spec(entry: dict[str, Any]) -> dict[str, Any]:
    """The runtime spec (config.json) a host sends with `create_container` for `entry`.

    Mounts stay empty: the agent adds the default ones (proc, dev, sys, ...) itself, with the
    options the policy requires. The rootfs path is ignored: the agent uses its overlay.
    """
    return {
        "ociVersion": "1.1.0",
        "process": _process(entry, entry["command"]),
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [],
        "linux": {"namespaces": [{"type": kind} for kind in _NAMESPACES]},
    }


def exec_process_spec(entry: dict[str, Any], index: int) -> dict[str, Any]:
    """The `process` of `exec_process` for the entry's exec_processes[index]."""
    return _process(entry, entry["exec_processes"][index]["command"])


@record
class Generated:
    document: bytes
    entries: list[dict[str, Any]]


def generate(layouts: list[str], layers_dir: str, **options: Any) -> Generated:
    """A version-1 policy with one container per layout; checked by the real parser.
    `names` and `manifests` apply to the layouts in order."""
    names = list(options.pop("names", None) or [])
    manifests = list(options.pop("manifests", None) or [])
    for what, given in (("--name", names), ("--manifest", manifests)):
        if len(given) > len(layouts):
            raise InvalidArgumentError(f"{len(given)} {what} for {len(layouts)} layouts")
    names += [None] * (len(layouts) - len(names))
    manifests += [None] * (len(layouts) - len(manifests))
    entries = [
        container_entry(layout, layers_dir, name=name, manifest=manifest, **options)
        for layout, name, manifest in zip(layouts, names, manifests, strict=True)
    ]
    entry_names = [e["name"] for e in entries]
    if len(set(entry_names)) != len(entry_names):
        raise InvalidArgumentError(
            f"two images would share a container name: {entry_names} (use --name)"
        )
    return Generated(finish(entries), entries)


def finish(entries: list[dict[str, Any]]) -> bytes:
    """The policy document for `entries`, checked by the agent's own parser."""
    document = (json.dumps({"version": 1, "containers": entries}, indent=2) + "\n").encode()
    parse_policy(document)  # never hand out a policy the agent would refuse
    return document


def generate_policy(layouts: list[str], layers_dir: str, **options: Any) -> bytes:
    return generate(layouts, layers_dir, **options).document
