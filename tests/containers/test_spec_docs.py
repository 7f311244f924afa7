"""docs/policy.md names every field the spec reader knows, with its rule: a field added to the
reader without a row in "The host's spec" fails here."""

from __future__ import annotations

import re
from pathlib import Path

from guestagent.containers._specfields import DEVICE_FIELDS, MOUNT_FIELDS, USER_FIELDS
from guestagent.containers.spec import LINUX_FIELDS, PROCESS_FIELDS, ROOT_FIELDS, TOP_LEVEL

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def _rows() -> list[str]:
    text = DOC.read_text()
    section = text.split("## The host's spec", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def _named(row: str, parent: str, leaf: str) -> bool:
    """The row's first cell names `leaf` (alone, or in a/b/c or a, b lists) under `parent`."""
    cell = row.split("|")[1]
    if parent and parent not in cell:
        return False
    return re.search(rf"[`/.,\s]{re.escape(leaf)}[`/.,\s]", cell) is not None


def _expected() -> list[tuple[str, str]]:
    fields = [("", k) for k in TOP_LEVEL - {"process", "root", "linux"}]
    fields += [("root", k) for k in ROOT_FIELDS]
    fields += [("process", k) for k in PROCESS_FIELDS - {"user"}]
    fields += [("process.user", k) for k in USER_FIELDS - {"username"}]
    fields += [("linux", k) for k in LINUX_FIELDS]
    return fields


def test_every_spec_field_has_a_row_with_its_rule() -> None:
    rows = _rows()
    missing = [
        f"{parent}.{leaf}".strip(".")
        for parent, leaf in _expected()
        if not any(_named(row, parent, leaf) for row in rows)
    ]
    assert not missing, f"docs/policy.md has no row for {missing}"
    for row in rows:  # and each row says how the field is ruled
        assert row.split("|")[2].strip() in {"ruled", "replaced", "refused (non-empty)"}, row


def test_mount_device_and_user_fields_are_named_in_their_row() -> None:
    rows = _rows()
    for first_cell, fields in [
        ("`mounts`", MOUNT_FIELDS),
        ("`linux.devices`", DEVICE_FIELDS),
        ("`process.user.uid", USER_FIELDS - {"umask"}),
    ]:
        row = next(r for r in rows if r.split("|")[1].strip().startswith(first_cell))
        unnamed = [f for f in fields if not any(m + f in row for m in ("`", "/", "."))]
        assert not unnamed, (first_cell, unnamed)
