"""Backend selection: auto uses real interfaces only and never falls back to the simulator."""

from __future__ import annotations

import pytest

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.snp.configfs import ConfigfsTsmBackend
from guestagent.snp.device import open_backend
from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.sevguest import SevGuestBackend
from guestagent.snp.sim import SimBackend, SimConfig


@pytest.fixture
def paths(tmp_path):
    return {"device_path": str(tmp_path / "sev-guest"), "tsm_root": str(tmp_path / "report")}


def test_auto_refuses_without_an_interface(paths, milan_state):
    with pytest.raises(SnpUnavailableError, match="Refusing to run without attestation") as err:
        open_backend("auto", sim_state=milan_state, **paths)
    assert err.value.code is ErrorCode.SNP_UNAVAILABLE


def test_auto_prefers_the_device_then_configfs(paths, tmp_path):
    (tmp_path / "report").mkdir()
    assert isinstance(open_backend("auto", **paths), ConfigfsTsmBackend)
    (tmp_path / "sev-guest").write_bytes(b"")
    backend = open_backend("auto", **paths)
    assert isinstance(backend, SevGuestBackend) and backend.simulated is False


@pytest.mark.parametrize("kind", ["sev-guest", "configfs-tsm"])
def test_an_explicit_missing_interface_is_unavailable(paths, kind):
    with pytest.raises(SnpUnavailableError, match="does not exist"):
        open_backend(kind, **paths)


def test_sim_only_when_asked_and_with_a_state_dir(paths, milan_state):
    with pytest.raises(InvalidArgumentError, match="state directory"):
        open_backend("sim", **paths)
    backend = open_backend("sim", sim_state=milan_state, **paths)
    assert isinstance(backend, SimBackend) and backend.describe()["simulated"] is True
    with pytest.raises(InvalidArgumentError, match="without choosing the sim backend"):
        open_backend("auto", sim_config=SimConfig(), **paths)


def test_unknown_kind(paths):
    with pytest.raises(InvalidArgumentError, match="unknown SNP backend 'tpm'"):
        open_backend("tpm", **paths)
