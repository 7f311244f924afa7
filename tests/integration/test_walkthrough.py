"""docs/walkthrough.md runs as written: policy gen, its spec, and a ctl session with no denial."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.busybox_layout import make_busybox_layout

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "walkthrough.md"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, runc)")


def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("runc") is None and shutil.which("crun") is None:
        pytest.skip("needs runc or crun (scripts/setup.sh installs runc)")
    make_busybox_layout(tmp_path / "busybox", tmp_path / "work", second_manifest=True)
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 7
    # Agents of concurrent test runs must not share container cgroups.
    cgroup = f"guestagent-walk-{tmp_path.name}-{os.getpid()}"
    # A command on PATH that execs the agent, so `$!` and `kill` reach the agent itself (a
    # shell function run in the background would leave it orphaned).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "guestagent"
    wrapper.write_text(
        "#!/bin/bash\n"
        f'if [[ $1 == serve ]]; then shift; set -- serve --cgroup-parent {cgroup} "$@"; fi\n'
        f'exec "{sys.executable}" -m guestagent "$@"\n'
    )
    wrapper.chmod(0o755)
    script = "\n".join(
        ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT", *blocks]
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO_ROOT),
            "GUESTAGENT_CONNECT": "",
        },
        timeout=600,
    )
    log = (tmp_path / "agent.log").read_text() if (tmp_path / "agent.log").exists() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + log[-3000:]
    out = done.stdout
    assert '"state": "enforcing"' in out
    assert "hello from a verified layer" in out
    assert "this file was read through dm-verity-checked data" in out
    assert "stopping" in out and '"exit_code": 0' in out
    # One denial, the one the doc asks for; everything policy gen wrote was accepted.
    assert done.stderr.count("policy.denied") == 1, done.stderr
    assert "exec_process failed: policy.denied" in done.stderr
    assert log.count('"msg":"denied"') == 1 and '"rule":"exec_in_container.argv"' in log
    # The trace recorded at the OCI level replays to the same decisions.
    trace = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert any('"oci"' in line and '"spec"' in line for line in trace)
    assert f"{len(trace)} requests, {len(trace) - 1} allowed, 1 denied" in out
    assert f"all {len(trace)} recorded decisions reproduced" in out
    assert not (tmp_path / "state" / "storage" / "layers" / "web-0").is_mount()
    assert not _agents_serving(tmp_path), "the walkthrough's agent outlived it"


def _agents_serving(tmp_path: Path) -> list[int]:
    """Pids of agents still listening on this test's socket."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"serve" in cmdline and str(tmp_path / "agent.sock").encode() in cmdline:
                found.append(int(entry.name))
    return found
