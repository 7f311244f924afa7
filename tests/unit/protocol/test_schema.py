from __future__ import annotations

import pytest

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.protocol.schema import Field, validate_args

SCHEMA = {
    "name": Field((str,)),
    "count": Field((int,), default=1, check=lambda v: None if v > 0 else "must be positive"),
    "data": Field((bytes,), default=b"", max_len=4),
    "argv": Field((list,), default=[], items=str),
}


def test_defaults_are_filled() -> None:
    assert validate_args(SCHEMA, {"name": "a"}) == {
        "name": "a",
        "count": 1,
        "data": b"",
        "argv": [],
    }


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        ({}, ErrorCode.INVALID_ARGUMENT, "missing required argument 'name'"),
        ({"name": 1}, ErrorCode.INVALID_ARGUMENT, "'name' must be str, got int"),
        ({"name": "a", "count": True}, ErrorCode.INVALID_ARGUMENT, "must be int, got bool"),
        ({"name": "a", "count": 0}, ErrorCode.INVALID_ARGUMENT, "must be positive"),
        ({"name": "a", "data": "text"}, ErrorCode.INVALID_ARGUMENT, "must be bytes, got str"),
        ({"name": "a", "data": b"12345"}, ErrorCode.INVALID_ARGUMENT, "longer than 4"),
        ({"name": "a", "argv": ["x", 1]}, ErrorCode.INVALID_ARGUMENT, "argv[1] must be str"),
        ({"name": "a", "extra": 1}, ErrorCode.UNKNOWN_FIELD, "unknown arguments: ['extra']"),
    ],
)
def test_bad_arguments_name_the_field(args: dict, code: ErrorCode, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_args(SCHEMA, args)
    assert caught.value.code is code
    assert fragment in caught.value.message
