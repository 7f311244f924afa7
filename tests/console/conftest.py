"""Fixtures for console tests: one simulated chip per session (its RSA-4096 CA is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guestagent.snp.sim import SimBackend


@pytest.fixture(scope="session")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console-sim") / "chip"
    SimBackend(path)
    return path
