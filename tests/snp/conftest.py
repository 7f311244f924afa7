"""Fixtures for the SNP tests: real vector cases and session-wide simulator states."""

from __future__ import annotations

from pathlib import Path

import pytest
from snp_testutil import VECTOR_CASES, VectorCase, load_case

from guestagent.snp.fields import Product
from guestagent.snp.sim import SimBackend, SimConfig


@pytest.fixture(params=sorted(VECTOR_CASES))
def vector_case(request, snp_vectors: Path) -> VectorCase:
    return load_case(snp_vectors, request.param)


@pytest.fixture(scope="session")
def milan_state(tmp_path_factory) -> Path:
    """One simulated Milan chip for the whole session (RSA-4096 generation is slow)."""
    path = tmp_path_factory.mktemp("sim") / "milan"
    SimBackend(path, SimConfig(product=Product.MILAN))
    return path


@pytest.fixture(scope="session")
def turin_state(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "turin"
    SimBackend(path, SimConfig(product=Product.TURIN))
    return path
