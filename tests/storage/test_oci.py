"""OCI image layouts built here: blobs by digest, every digest checked."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest
from storage_helpers import directory, reg, require, write_tar

from guestagent.errors import IntegrityError, InvalidArgumentError
from guestagent.storage.layer import build_layer
from guestagent.storage.oci import image_layer_hashes, read_image_layout

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_layout(tmp_path: Path) -> tuple[Path, list[Path]]:
    layout = tmp_path / "layout"
    tars = [
        write_tar(tmp_path / "l0.tar", [directory("app/"), reg("app/run", b"v1", mode=0o755)]),
        write_tar(tmp_path / "l1.tar", [reg("app/run", b"v2", mode=0o755)]),
    ]
    layers, diff_ids = [], []
    for number, tar in enumerate(tars):
        raw = tar.read_bytes()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = gzip.compress(raw, mtime=0) if number == 1 else raw
        kind = "tar+gzip" if number == 1 else "tar"
        layers.append(
            {"mediaType": f"application/vnd.oci.image.layer.v1.{kind}", **_blob(layout, blob)}
        )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/app/run"],
            "Cmd": ["--serve"],
            "Env": ["PATH=/bin", "A=1"],
            "WorkingDir": "/app",
            "User": "1000:1000",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(layout, json.dumps(config).encode()),
    }
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc, "layers": layers}
    manifest_desc = {"mediaType": MANIFEST, **_blob(layout, json.dumps(manifest).encode())}
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]})
    )
    return layout, tars


def test_reads_layers_in_order_and_config(tmp_path):
    layout, _ = make_layout(tmp_path)
    image = read_image_layout(str(layout))
    assert [layer.media_type.rsplit(".", 1)[1] for layer in image.layers] == ["tar", "tar+gzip"]
    assert all(os.path.isfile(layer.path) for layer in image.layers)
    assert image.config.argv == ["/app/run", "--serve"]
    assert image.config.env == ["PATH=/bin", "A=1"]
    assert (image.config.working_dir, image.config.user) == ("/app", "1000:1000")


def test_tampered_blob_is_refused(tmp_path):
    layout, _ = make_layout(tmp_path)
    image = read_image_layout(str(layout))
    Path(image.layers[0].path).write_bytes(b"swapped layer")
    with pytest.raises(IntegrityError, match="does not match its digest"):
        read_image_layout(str(layout))


@pytest.mark.parametrize(
    "index",
    [{"manifests": []}, {"manifests": [{"mediaType": MANIFEST, "digest": "sha256:../../x"}]}, []],
)
def test_malformed_index_is_refused(tmp_path, index):
    layout, _ = make_layout(tmp_path)
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(InvalidArgumentError):
        read_image_layout(str(layout))


@pytest.mark.root
def test_layer_hashes_equal_directly_built_images(tmp_path):
    require("mkfs.erofs")
    if os.geteuid() != 0:
        pytest.skip("layer extraction needs root")
    layout, tars = make_layout(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    roots = image_layer_hashes(str(layout), str(work))
    # the gzip blob and its plain tar give the same image: the root is over the content
    direct = [
        build_layer(str(t), str(tmp_path / f"d{i}.img")).root_hash for i, t in enumerate(tars)
    ]
    assert roots == direct and roots[0] != roots[1]
