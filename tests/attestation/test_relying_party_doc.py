"""docs/relying-party.md is runnable: its sh blocks run in order, against the simulator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "relying-party.md"


def test_walkthrough_runs_as_written(tmp_path):
    for tool in ("openssl", "sha512sum"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 7
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")  # as if in the checkout
    script = "\n".join(
        [
            "set -euo pipefail",
            f'guestagent() {{ "{sys.executable}" -m guestagent "$@"; }}',
            f'python3() {{ "{sys.executable}" "$@"; }}',
            *blocks,
        ]
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    host_data = re.search(r"^([0-9a-f]{64})$", out, re.M).group(1)
    assert re.search(rf"^host_data\s+{host_data}$", out, re.M)
    assert "verification PASSED" in out
    assert '! "attester": may use the attestation service' in out
    assert "refused: HOST_DATA is not the digest of other-policy.json" in out
    assert "check failed: report.host_data" in done.stderr
    assert out.rstrip().endswith("secret released to the attested workload")
