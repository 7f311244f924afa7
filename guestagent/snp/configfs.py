"""The configfs-tsm backend (/sys/kernel/config/tsm/report, Linux >= 6.7).

Each request makes a fresh entry (mkdir), writes `privlevel` and `inblob`, reads `outblob`
(the bare report for sev_guest) and `auxblob` (the GHCB cert table), and removes the entry.
`generation` is read before and after: every write bumps it, so any value other than ours + 2
means another writer touched the entry; the request is retried in a new entry, a bounded
number of times. File access goes through `ops` so tests can run a fake kernel tree.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from guestagent.errors import InvalidArgumentError
from guestagent.snp.backend import DerivedKeyRequest, check_report_data, check_vmpl
from guestagent.snp.cert_table import CertTable
from guestagent.snp.errors import BadReportError, SnpBusyError, SnpUnavailableError
from guestagent.snp.paths import DEFAULT_ROOT
from guestagent.snp.report import REPORT_SIZE, parse_report

__all__ = ["DEFAULT_ROOT", "ConfigfsOps", "ConfigfsTsmBackend", "OsConfigfsOps"]

ATTEMPTS = 3
_WRITES_PER_REQUEST = 2  # privlevel, inblob


class ConfigfsOps(Protocol):
    def mkdir(self, path: Path) -> None: ...
    def rmdir(self, path: Path) -> None: ...
    def write(self, path: Path, data: bytes) -> None: ...
    def read(self, path: Path) -> bytes: ...
    def exists(self, path: Path) -> bool: ...


class OsConfigfsOps:
    """The real thing: configfs attributes are plain files written in one write()."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)

    def read(self, path: Path) -> bytes:
        with open(path, "rb", buffering=0) as handle:
            return handle.read()

    def exists(self, path: Path) -> bool:
        return path.exists()


class ConfigfsTsmBackend:
    name = "configfs-tsm"
    simulated = False

    def __init__(
        self, root: str | os.PathLike[str] = DEFAULT_ROOT, *, ops: ConfigfsOps | None = None
    ) -> None:
        self.root = Path(root)
        self.ops: ConfigfsOps = ops or OsConfigfsOps()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "simulated": False, "root": str(self.root)}

    def get_report(self, report_data: bytes = bytes(64), vmpl: int = 0) -> bytes:
        return self.get_extended_report(report_data, vmpl)[0]

    def get_certificates(self) -> CertTable | None:
        return self.get_extended_report()[1]

    def get_derived_key(self, request: DerivedKeyRequest) -> bytes:
        raise SnpUnavailableError(
            "configfs-tsm has no derived-key interface; use the sev-guest backend"
        )

    def get_extended_report(
        self, report_data: bytes = bytes(64), vmpl: int = 0
    ) -> tuple[bytes, CertTable | None]:
        report_data = check_report_data(report_data)
        check_vmpl(vmpl)
        seen: list[str] = []
        for _ in range(ATTEMPTS):
            entry = self.root / f"guestagent-{os.getpid()}-{secrets.token_hex(6)}"
            try:
                self.ops.mkdir(entry)
            except OSError as exc:
                raise SnpUnavailableError(
                    f"configfs-tsm: cannot create {entry}: {exc.strerror}"
                ) from None
            try:
                outcome = self._request(entry, report_data, vmpl)
            finally:
                self._remove(entry)
            if isinstance(outcome, str):
                seen.append(outcome)
                continue
            return outcome
        raise SnpBusyError(
            f"configfs-tsm: another writer changed the report entry on each of {ATTEMPTS} "
            f"attempts ({'; '.join(seen)})"
        )

    def _remove(self, entry: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.ops.rmdir(entry)

    def _generation(self, entry: Path) -> int:
        raw = self._read(entry, "generation")
        try:
            return int(raw.strip())
        except ValueError:
            raise SnpUnavailableError(f"configfs-tsm: bad generation value {raw!r}") from None

    def _read(self, entry: Path, attr: str) -> bytes:
        try:
            return self.ops.read(entry / attr)
        except OSError as exc:
            raise SnpUnavailableError(
                f"configfs-tsm: cannot read {attr}: {exc.strerror or exc}"
            ) from None

    def _write(self, entry: Path, attr: str, data: bytes) -> None:
        try:
            self.ops.write(entry / attr, data)
        except OSError as exc:
            raise SnpUnavailableError(
                f"configfs-tsm: cannot write {attr}: {exc.strerror or exc}"
            ) from None

    def _check_entry(self, entry: Path, vmpl: int) -> None:
        provider = self._read(entry, "provider").strip().decode(errors="replace")
        if provider != "sev_guest":
            raise SnpUnavailableError(f"configfs-tsm provider is {provider!r}, not sev_guest")
        if self.ops.exists(entry / "privlevel_floor"):
            floor = int(self._read(entry, "privlevel_floor").strip() or 0)
            if vmpl < floor:
                raise InvalidArgumentError(f"VMPL {vmpl} is below privlevel_floor {floor}")

    def _request(
        self, entry: Path, report_data: bytes, vmpl: int
    ) -> tuple[bytes, CertTable | None] | str:
        """One attempt: the report and certs, or a string saying how a writer raced us."""
        self._check_entry(entry, vmpl)
        before = self._generation(entry)
        self._write(entry, "privlevel", f"{vmpl}\n".encode())
        self._write(entry, "inblob", report_data)
        outblob = self._read(entry, "outblob")
        auxblob = self._read(entry, "auxblob") if self.ops.exists(entry / "auxblob") else b""
        after = self._generation(entry)
        expected = before + _WRITES_PER_REQUEST
        if after != expected:
            return f"generation {before} -> {after}, expected {expected}"
        if len(outblob) != REPORT_SIZE:
            raise BadReportError(f"configfs-tsm outblob is {len(outblob)} bytes, not {REPORT_SIZE}")
        report = parse_report(outblob)
        if report.report_data != report_data or report.vmpl != vmpl:
            return "outblob carries another request's report data or VMPL"
        return outblob, CertTable.parse(auxblob) if any(auxblob[:24]) else None
