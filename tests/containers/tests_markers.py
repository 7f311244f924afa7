"""Markers for tests that need the real OCI runtime and root."""

from __future__ import annotations

import os
import shutil

import pytest

requires_runtime = [
    pytest.mark.runtime,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runc, cgroups, namespaces)"),
    pytest.mark.skipif(
        shutil.which("runc") is None and shutil.which("crun") is None,
        reason="no OCI runtime installed (.ci/run installs runc)",
    ),
]
