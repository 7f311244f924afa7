"""An OCI image layout of busybox-static, built here: what `skopeo copy` would leave on disk."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from guestagent.demo.assets import build_busybox_rootfs

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Runs until SIGTERM (a trap: as PID 1 an untrapped SIGTERM would be ignored).
COMMAND = [
    "/bin/sh",
    "-c",
    "trap 'echo stopping; exit 0' TERM; echo hello from a verified layer; "
    "while :; do sleep 1; done",
]


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _tar(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), str(path.relative_to(root)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _manifest(layout: Path, layer: bytes, arch: str, ref: str) -> dict[str, Any]:
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Cmd": COMMAND,
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_blob(layout, json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(layout, layer)}],
    }
    return {
        "mediaType": MANIFEST,
        **_blob(layout, json.dumps(manifest).encode()),
        "platform": {"os": "linux", "architecture": arch},
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }


def make_busybox_layout(layout: Path, work: Path, *, second_manifest: bool = False) -> Path:
    """`layout` holding busybox (ref "1.36", linux/amd64); with `second_manifest`, also an
    arm64 entry ("1.36-arm64"), so that a manifest must be picked."""
    layer = _tar(build_busybox_rootfs(work / "busybox-rootfs"))
    manifests = [_manifest(layout, layer, "amd64", "1.36")]
    if second_manifest:
        manifests.append(_manifest(layout, layer + b"\0" * 1024, "arm64", "1.36-arm64"))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return layout
