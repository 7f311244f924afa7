"""The GHCB certificate table (extended report certs, configfs-tsm auxblob).

Layout (GHCB spec 56421 §4.1.8.1): entries of GUID (16 bytes, RFC 4122 byte order) + offset
u32 + length u32, ended by an all-zero entry; offsets count from the start of the table.
Pure: `CertTable.parse` bounds-checks every entry and `build` lays certificates out after it.
"""

from __future__ import annotations

import base64
import struct
import uuid

from guestagent.records import field, record
from guestagent.snp.errors import BadReportError

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "ENTRY_SIZE",
    "VCEK_GUID",
    "VLEK_GUID",
    "CertTable",
    "certificates_json",
]

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")

ENTRY_SIZE = 24
_ENTRY = struct.Struct("<16sII")
_NAMES = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark"}
# A table with more entries than this is not one a host would send; refuse it early.
MAX_ENTRIES = 64


@record
class CertTable:
    """Certificates by GUID, in table order. Values are the raw (DER) certificate bytes."""

    entries: dict[uuid.UUID, bytes] = field(default_factory=dict)

    def get(self, guid: uuid.UUID) -> bytes | None:
        return self.entries.get(guid)

    @property
    def vcek(self) -> bytes | None:
        return self.get(VCEK_GUID)

    @property
    def vlek(self) -> bytes | None:
        return self.get(VLEK_GUID)

    @property
    def ask(self) -> bytes | None:
        return self.get(ASK_GUID)

    @property
    def ark(self) -> bytes | None:
        return self.get(ARK_GUID)

    def names(self) -> list[str]:
        return [_NAMES.get(guid, str(guid)) for guid in self.entries]

    def build(self) -> bytes:
        header_size = ENTRY_SIZE * (len(self.entries) + 1)
        header = bytearray()
        body = bytearray()
        for guid, cert in self.entries.items():
            header += _ENTRY.pack(guid.bytes, header_size + len(body), len(cert))
            body += cert
        header += bytes(ENTRY_SIZE)  # the all-zero terminator
        return bytes(header + body)

    @classmethod
    def parse(cls, data: bytes) -> CertTable:
        """Parse a table; trailing zero padding (page-sized kernel buffers) is allowed."""
        entries: dict[uuid.UUID, bytes] = {}
        for index in range(MAX_ENTRIES + 1):
            start = index * ENTRY_SIZE
            if start + ENTRY_SIZE > len(data):
                raise BadReportError("certificate table has no all-zero terminating entry")
            raw_guid, offset, length = _ENTRY.unpack_from(data, start)
            if raw_guid == bytes(16) and offset == 0 and length == 0:
                return cls(entries)
            if index == MAX_ENTRIES:
                break
            guid = uuid.UUID(bytes=raw_guid)
            if guid in entries:
                raise BadReportError(f"certificate table lists {guid} twice")
            table_end = (index + 1) * ENTRY_SIZE
            if offset < table_end or offset + length > len(data) or length == 0:
                raise BadReportError(
                    f"certificate table entry {guid} (offset {offset}, length {length}) "
                    f"lies outside the {len(data)}-byte buffer"
                )
            entries[guid] = bytes(data[offset : offset + length])
        raise BadReportError(f"certificate table has more than {MAX_ENTRIES} entries")


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def certificates_json(table: CertTable | None) -> dict[str, str] | None:
    """{"vcek": PEM, "ask": PEM, "ark": PEM} as the platform supplies them, or None."""
    if table is None or not table.entries:
        return None
    return {
        name: _pem(der) for name, der in zip(table.names(), table.entries.values(), strict=True)
    }
