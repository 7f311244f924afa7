"""Fixtures for attestation tests: one simulated chip per session (its RSA-4096 CA is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestagent.snp.sim import SimBackend


@pytest.fixture(scope="session")
def chip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's state directory: the same chip (root secret, keys) for every launch."""
    path = tmp_path_factory.mktemp("attest-sim") / "chip"
    SimBackend(path)
    return path
