"""Shared fixtures: where the reference vectors live, and markers for what the machine has."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The real SNP reports and AMD certificates sit beside the checkout in shared/vectors.
VECTORS = Path(os.environ.get("GUESTAGENT_VECTORS", REPO_ROOT.parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def snp_vectors() -> Path:
    path = VECTORS / "snp"
    if not path.is_dir():
        pytest.skip(f"real SNP vectors not found at {path} (set GUESTAGENT_VECTORS)")
    return path


def is_root() -> bool:
    return os.geteuid() == 0


requires_root = pytest.mark.skipif(not is_root(), reason="needs root")


def which_or_skip(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it)")
    return path
