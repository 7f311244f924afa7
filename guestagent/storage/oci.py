"""Read an OCI image layout: index.json -> manifest -> config and layer blobs.

Every blob is read through its descriptor and its sha256 checked against the digest (and size)
before it is parsed or used, so a tampered layout fails here, not later.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.records import field, record
from guestagent.storage.layer import build_layer

__all__ = ["ImageConfig", "OciImage", "OciLayer", "image_layer_hashes", "read_image_layout"]

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
_MAX_JSON = 4 << 20


@record
class OciLayer:
    path: str  # blob file, digest already verified
    media_type: str
    digest: str


@record
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


@record
class OciImage:
    layers: list[OciLayer]  # base layer first, as the manifest lists them
    config: ImageConfig
    manifest_digest: str
    diff_ids: list[str] = field(default_factory=list)  # "sha256:..." of each uncompressed layer


def _blob_path(layout: str, digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if (
        algorithm != "sha256"
        or len(hexpart) != 64
        or not all(c in "0123456789abcdef" for c in hexpart)
    ):
        raise InvalidArgumentError(f"unsupported or malformed digest {digest!r}")
    return os.path.join(layout, "blobs", "sha256", hexpart)


def _verify_blob(layout: str, descriptor: dict[str, Any]) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str):
        raise InvalidArgumentError("descriptor without a digest")
    path = _blob_path(layout, digest)
    size, hasher = 0, hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InvalidArgumentError(f"blob {digest} unreadable: {exc.strerror}") from exc
    if "sha256:" + hasher.hexdigest() != digest:
        raise IntegrityError(f"blob {digest} does not match its digest")
    if descriptor.get("size") is not None and descriptor["size"] != size:
        raise IntegrityError(f"blob {digest} is {size} bytes, descriptor says {descriptor['size']}")
    return path


def _read_json_blob(layout: str, descriptor: dict[str, Any]) -> dict[str, Any]:
    path = _verify_blob(layout, descriptor)
    if os.path.getsize(path) > _MAX_JSON:
        raise InvalidArgumentError(f"blob {descriptor['digest']} too large for JSON")
    with open(path, "rb") as fh:
        return _loads(fh.read(), descriptor["digest"])


def _loads(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{what}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{what}: expected a JSON object")
    return value


_REF_NAME = "org.opencontainers.image.ref.name"


def describe_manifest(descriptor: dict[str, Any]) -> str:
    """One line naming a manifest of an index: its ref name, platform and digest."""
    annotations = descriptor.get("annotations") or {}
    platform = descriptor.get("platform") or {}
    parts = [str(annotations.get(_REF_NAME, "") if isinstance(annotations, dict) else "")]
    if isinstance(platform, dict) and platform.get("os"):
        keys = ("os", "architecture", "variant")
        parts.append("/".join(str(platform[k]) for k in keys if k in platform))
    parts.append(str(descriptor.get("digest", "")))
    return " ".join(p for p in parts if p)


def _selected(descriptor: dict[str, Any], select: str) -> bool:
    """`select` names a manifest by ref name, os/arch[/variant], or a digest (prefix)."""
    annotations = descriptor.get("annotations") or {}
    if isinstance(annotations, dict) and annotations.get(_REF_NAME) == select:
        return True
    digest = str(descriptor.get("digest", ""))
    if len(select) >= 8 and (digest.startswith(select) or digest.startswith("sha256:" + select)):
        return True
    platform = descriptor.get("platform") or {}
    if isinstance(platform, dict) and platform.get("os"):
        wanted = select.split("/")
        keys = ("os", "architecture", "variant")[: len(wanted)]
        return len(wanted) > 1 and [str(platform.get(k, "")) for k in keys] == wanted
    return False


def _pick_manifest(index: dict[str, Any], layout: str, select: str | None) -> dict[str, Any]:
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    candidates = [m for m in manifests if m.get("mediaType") in MANIFEST_TYPES]
    if select is not None:
        candidates = [m for m in candidates if _selected(m, select)]
    if len(candidates) == 1:
        return candidates[0]
    every = [m for m in manifests if m.get("mediaType") in MANIFEST_TYPES]
    listed = "; ".join(describe_manifest(m) for m in every)
    if select is not None:
        raise InvalidArgumentError(
            f"{layout}: {len(candidates)} image manifests match {select!r} (the index has: "
            f"{listed or 'none'})"
        )
    if not candidates:
        raise InvalidArgumentError(f"{layout}: index.json lists no image manifest")
    raise InvalidArgumentError(
        f"{layout}: index.json lists {len(candidates)} image manifests; pick one by ref name, "
        f"os/arch or digest: {listed}"
    )


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"image config {what} must be a list of strings")
    return list(value)


def _image_config(raw: dict[str, Any]) -> ImageConfig:
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidArgumentError("image config 'config' must be an object")
    return ImageConfig(
        entrypoint=_string_list(config.get("Entrypoint"), "Entrypoint"),
        cmd=_string_list(config.get("Cmd"), "Cmd"),
        env=_string_list(config.get("Env"), "Env"),
        working_dir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        stop_signal=str(config.get("StopSignal") or ""),
    )


def read_image_layout(layout: str, select: str | None = None) -> OciImage:
    """Parse and verify an OCI image layout directory: its one image, or the one `select`
    names (ref name, os/arch[/variant] or digest) when the index lists several."""
    try:
        with open(os.path.join(layout, "index.json"), "rb") as fh:
            index = _loads(fh.read(), "index.json")
    except OSError as exc:
        raise InvalidArgumentError(f"{layout}: no readable index.json ({exc.strerror})") from exc
    descriptor = _pick_manifest(index, layout, select)
    manifest = _read_json_blob(layout, descriptor)
    config = _read_json_blob(layout, manifest.get("config") or {})
    layers = []
    for entry in manifest.get("layers") or []:
        media_type = entry.get("mediaType", "")
        if media_type not in LAYER_TYPES:
            raise InvalidArgumentError(f"layer {entry.get('digest')}: media type {media_type!r}")
        layers.append(OciLayer(_verify_blob(layout, entry), media_type, entry["digest"]))
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if diff_ids is not None and len(diff_ids) != len(layers):
        raise IntegrityError("image config lists a different number of layers than the manifest")
    return OciImage(layers, _image_config(config), descriptor["digest"], list(diff_ids or []))


def image_layer_hashes(layout: str, work_dir: str, select: str | None = None) -> list[str]:
    """Build every layer's image under `work_dir` (layerN.img); return their root hashes,
    base first."""
    image = read_image_layout(layout, select)
    diff_ids = image.diff_ids
    roots = []
    for number, layer in enumerate(image.layers):
        built = build_layer(layer.path, os.path.join(work_dir, f"layer{number}.img"), work_dir)
        if diff_ids and "sha256:" + built.diff_id != diff_ids[number]:
            raise IntegrityError(f"layer {layer.digest}: uncompressed digest is not its diff_id")
        roots.append(built.root_hash)
    return roots
