"""`guestagent policy gen`: policy container entries from OCI image layouts.

Each image's layers are built into verity layer images (the same bytes and root hashes the
guest will compute), and the image config gives the command, environment, working directory
and user. The result is a starting point that the operator tightens: every environment
variable is an exact string, nothing privileged is granted, and stdio stays closed unless
asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from guestagent.errors import InvalidArgumentError
from guestagent.policy.document import parse_policy
from guestagent.storage.oci import image_layer_hashes, read_image_layout

__all__ = ["container_entry", "generate_policy", "numeric_user"]


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


def container_entry(
    layout: str,
    layers_dir: str,
    *,
    name: str | None = None,
    user: str | None = None,
    allow_stdio: bool = False,
) -> dict[str, Any]:
    image = read_image_layout(layout)
    work = os.path.join(layers_dir, name or Path(layout).name)
    os.makedirs(work, exist_ok=True)
    hashes = image_layer_hashes(layout, work)
    config = image.config
    if not config.argv:
        raise InvalidArgumentError(f"{layout}: the image config has no Entrypoint or Cmd")
    return {
        "name": name or Path(layout).name,
        "layers": hashes,
        "command": config.argv,
        "env_rules": [{"pattern": e, "strategy": "string", "required": True} for e in config.env],
        "working_dir": config.working_dir or "/",
        "user": numeric_user(user if user is not None else config.user),
        "capabilities": None,
        "no_new_privileges": True,
        "allow_stdio_access": allow_stdio,
    }


def generate_policy(layouts: list[str], layers_dir: str, **options: Any) -> bytes:
    """A version-1 policy with one container per layout; checked by the real parser."""
    entries = [container_entry(layout, layers_dir, **options) for layout in layouts]
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"two images would share a container name: {names}")
    document = (json.dumps({"version": 1, "containers": entries}, indent=2) + "\n").encode()
    parse_policy(document)  # never hand out a policy the agent would refuse
    return document
