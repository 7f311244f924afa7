"""`guestagent policy gen` on an OCI layout built here: real layer hashes, image config."""

from __future__ import annotations

import json
import subprocess
import sys

from storage_helpers import require
from test_oci import make_layout

from guestagent.policy.document import parse_policy
from guestagent.policy.measure import measure
from guestagent.storage.layer import build_layer


def test_gen_writes_a_policy_with_the_layers_the_guest_will_compute(tmp_path) -> None:
    require("mkfs.erofs")
    layout, tars = make_layout(tmp_path)
    out = tmp_path / "policy.json"
    result = subprocess.run(
        [sys.executable, "-m", "guestagent", "policy", "gen", str(layout), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    policy = json.loads(out.read_text())
    (entry,) = policy["containers"]
    expected = [
        build_layer(str(t), str(tmp_path / f"check{i}.img"), str(tmp_path)).root_hash
        for i, t in enumerate(tars)
    ]
    assert entry["layers"] == expected
    assert entry["command"] == ["/app/run", "--serve"]
    assert [r["pattern"] for r in entry["env_rules"]] == ["PATH=/bin", "A=1"]
    assert (entry["working_dir"], entry["user"]["uid"], entry["user"]["gid"]) == (
        "/app",
        1000,
        1000,
    )
    assert entry["allow_stdio_access"] is False
    parse_policy(out.read_bytes())
    assert f"HOST_DATA {measure(out.read_bytes()).host_data_hex}" in result.stdout


def test_gen_refuses_a_user_name_it_cannot_resolve(tmp_path) -> None:
    require("mkfs.erofs")
    layout, _ = make_layout(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "guestagent",
            "policy",
            "gen",
            str(layout),
            "-o",
            str(tmp_path / "p.json"),
            "--user",
            "nobody",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "user 'nobody' is not numeric" in result.stderr
    assert not (tmp_path / "p.json").exists()
