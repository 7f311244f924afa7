"""configfs-tsm against a fake tree in tmp that behaves like the kernel's report entries:
mkdir makes the attributes, every write bumps `generation`, reading `outblob` runs the request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.snp.backend import DerivedKeyRequest
from guestagent.snp.configfs import ATTEMPTS, ConfigfsTsmBackend, OsConfigfsOps
from guestagent.snp.errors import SnpBusyError, SnpUnavailableError
from guestagent.snp.report import parse_report
from guestagent.snp.sim import SimBackend

ATTRIBUTES = (
    "provider",
    "generation",
    "privlevel_floor",
    "inblob",
    "privlevel",
    "outblob",
    "auxblob",
)


class FakeTsm(OsConfigfsOps):
    """The kernel side of /sys/kernel/config/tsm/report, over real files in a tmp tree."""

    def __init__(self, sim: SimBackend, *, provider: str = "sev_guest", floor: int = 0):
        self.sim = sim
        self.provider = provider
        self.floor = floor
        self.on_outblob = None  # hook: another writer acting while we read
        self.entries_made: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.entries_made.append(path)
        (path / "provider").write_text(f"{self.provider}\n")
        (path / "generation").write_text("0\n")
        (path / "privlevel_floor").write_text(f"{self.floor}\n")
        for name in ("inblob", "privlevel", "outblob", "auxblob"):
            (path / name).write_bytes(b"")

    def rmdir(self, path: Path) -> None:
        for name in ATTRIBUTES:
            (path / name).unlink(missing_ok=True)
        super().rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        if path.name not in ("inblob", "privlevel"):
            raise PermissionError(13, "read-only attribute")
        if path.name == "inblob" and len(data) > 64:
            raise OSError(22, "inblob is at most 64 bytes")
        super().write(path, data)
        self.bump(path.parent)

    def bump(self, entry: Path) -> None:
        generation = entry / "generation"
        generation.write_text(f"{int(generation.read_text()) + 1}\n")

    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            entry = path.parent
            if self.on_outblob:
                self.on_outblob(self, entry)
            inblob = (entry / "inblob").read_bytes().ljust(64, b"\0")
            vmpl = int((entry / "privlevel").read_text() or 0)
            report, table = self.sim.get_extended_report(inblob, vmpl)
            (entry / "auxblob").write_bytes(table.build())
            return report
        return super().read(path)


@pytest.fixture
def sim(milan_state):
    return SimBackend(milan_state)


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "tsm" / "report"
    path.mkdir(parents=True)
    return path


def test_report_and_certificates_through_configfs(root, sim):
    fake = FakeTsm(sim)
    backend = ConfigfsTsmBackend(root, ops=fake)
    nonce = os.urandom(64)
    raw, table = backend.get_extended_report(nonce, vmpl=2)
    report = parse_report(raw)
    assert report.report_data == nonce and report.vmpl == 2
    assert table.vcek == sim.get_certificates().vcek and table.ark is not None
    assert len(fake.entries_made) == 1 and fake.entries_made[0].parent == root
    assert list(root.iterdir()) == []  # the entry was removed
    assert backend.describe() == {"name": "configfs-tsm", "simulated": False, "root": str(root)}


def test_a_concurrent_writer_is_detected_and_the_request_retried(root, sim):
    fake = FakeTsm(sim)
    raced = []

    def other_writer(tsm, entry):
        if not raced:  # another process writes our entry's inblob once
            raced.append(entry)
            (entry / "inblob").write_bytes(b"\xee" * 64)
            tsm.bump(entry)

    fake.on_outblob = other_writer
    nonce = b"\x01" * 64
    raw = ConfigfsTsmBackend(root, ops=fake).get_report(nonce)
    assert parse_report(raw).report_data == nonce  # never the other writer's data
    assert len(fake.entries_made) == 2  # retried in a fresh entry
    assert list(root.iterdir()) == []


def test_a_persistent_race_fails_clearly(root, sim):
    fake = FakeTsm(sim)
    fake.on_outblob = lambda tsm, entry: tsm.bump(entry)
    with pytest.raises(SnpBusyError, match=r"generation 0 -> 3, expected 2") as err:
        ConfigfsTsmBackend(root, ops=fake).get_report(b"\x02" * 64)
    assert err.value.code is ErrorCode.SNP_BUSY
    assert len(fake.entries_made) == ATTEMPTS
    assert list(root.iterdir()) == []


def test_a_race_that_keeps_the_generation_is_still_caught(root, sim):
    """A writer that swaps inblob without a bump is caught by checking the report's data."""
    fake = FakeTsm(sim)
    fake.on_outblob = lambda tsm, entry: (entry / "inblob").write_bytes(b"\xee" * 64)
    with pytest.raises(SnpBusyError, match="another request's report data"):
        ConfigfsTsmBackend(root, ops=fake).get_report(b"\x03" * 64)


def test_wrong_provider_is_refused(root, sim):
    fake = FakeTsm(sim, provider="tdx_guest")
    with pytest.raises(SnpUnavailableError, match="provider is 'tdx_guest'"):
        ConfigfsTsmBackend(root, ops=fake).get_report()
    assert list(root.iterdir()) == []


def test_privlevel_floor_is_respected(root, sim):
    fake = FakeTsm(sim, floor=2)
    with pytest.raises(InvalidArgumentError, match="below privlevel_floor 2"):
        ConfigfsTsmBackend(root, ops=fake).get_report(vmpl=1)
    assert parse_report(ConfigfsTsmBackend(root, ops=fake).get_report(vmpl=2)).vmpl == 2


def test_missing_root_is_unavailable(tmp_path, sim):
    backend = ConfigfsTsmBackend(tmp_path / "absent", ops=FakeTsm(sim))
    with pytest.raises(SnpUnavailableError, match="cannot create"):
        backend.get_report()


def test_no_derived_keys_through_configfs(root):
    with pytest.raises(SnpUnavailableError, match="no derived-key interface"):
        ConfigfsTsmBackend(root).get_derived_key(DerivedKeyRequest())
