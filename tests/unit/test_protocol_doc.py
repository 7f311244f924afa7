"""docs/protocol.md documents every operation and every error code the agent speaks."""

from __future__ import annotations

from pathlib import Path

from guestagent.errors import ErrorCode
from guestagent.server.ops import all_operations

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def test_every_operation_is_documented() -> None:
    missing = [op.name for op in all_operations() if f"`{op.name}`" not in DOC]
    assert missing == []


def test_every_documented_point_matches_the_code() -> None:
    for op in all_operations():
        if op.point is not None and f"#### `{op.name}` (point" in DOC:
            assert f"#### `{op.name}` (point `{op.point}`" in DOC, op.name


def test_every_error_code_is_documented() -> None:
    missing = [code.value for code in ErrorCode if f"`{code.value}`" not in DOC]
    assert missing == []
