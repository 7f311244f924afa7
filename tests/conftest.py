"""Shared fixtures: where the reference vectors live, and markers for what the machine has."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The real SNP reports and AMD certificates ship with the tests (sources: tests/data/snp/README.md).
SNP_VECTORS = REPO_ROOT / "tests" / "data" / "snp"


@pytest.fixture(scope="session")
def snp_vectors() -> Path:
    return SNP_VECTORS


def is_root() -> bool:
    return os.geteuid() == 0


requires_root = pytest.mark.skipif(not is_root(), reason="needs root")


def which_or_skip(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it)")
    return path


# crun (1.8) refuses a hybrid cgroup host whose unified hierarchy still holds a controller
# (this development machine: v1 controllers, hugetlb left on v2), where runc copes. Its wrapper
# hides the unified mount in a private mount namespace, so crun sees a plain v1 host; the
# guest is pure cgroup v2 and runs crun itself. Nothing changes outside that namespace.
CRUN_ON_V1 = """#!/bin/sh
exec unshare --mount --propagation private sh -c \
    'mount -t tmpfs -o size=64k none /sys/fs/cgroup/unified && exec "$0" "$@"' {crun} "$@"
"""


def hybrid_with_unified_controllers() -> bool:
    try:
        return bool(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split())
    except OSError:
        return False


@pytest.fixture(params=["runc", "crun"])
def oci_runtime(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each OCI runtime the agent supports, by path: the same bundle must work with both."""
    path = shutil.which(request.param)
    if path is None:
        if os.geteuid() != 0:
            pytest.skip(f"{request.param} is not installed")
        pytest.fail(f"{request.param} is not installed (scripts/test.sh installs it)")
    if request.param == "crun" and hybrid_with_unified_controllers():
        wrapper = tmp_path_factory.mktemp("crun") / "crun"
        wrapper.write_text(CRUN_ON_V1.format(crun=path))
        wrapper.chmod(0o755)
        return str(wrapper)
    return path


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """In CI a skipped test is a tier that did not run: say so, and fail the session."""
    skipped = terminalreporter.stats.get("skipped", [])
    if _in_ci() and skipped:
        terminalreporter.write_line(
            f"CI: {len(skipped)} skipped test(s) count as failures (a tier that cannot run "
            "must fail in CI; see the skip reasons above)",
            red=True,
        )


def pytest_sessionfinish(session, exitstatus) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if _in_ci() and skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
