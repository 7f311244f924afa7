"""`guestagent ctl` arguments: typed by the operation's schema, errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guestagent.cli import main
from guestagent.cli.ctl import ArgumentError, parse_assignments
from guestagent.client.display import decoded
from guestagent.server.ops import all_operations

SCHEMAS = {op.name: op.args for op in all_operations()}


def test_plain_values_take_the_schema_type() -> None:
    signal = SCHEMAS["signal_process"]
    assert parse_assignments(["container_id=web", "signal=15"], None, signal) == {
        "container_id": "web",
        "signal": 15,
    }
    assert parse_assignments(["signal=TERM"], None, signal) == {"signal": 15}
    assert parse_assignments(["signal=SIGKILL"], None, signal) == {"signal": 9}
    stdin = SCHEMAS["write_stdin"]
    assert parse_assignments(["data=hello", "close=true"], None, stdin) == {
        "data": b"hello",
        "close": True,
    }
    wait = SCHEMAS["wait_process"]
    assert parse_assignments(["timeout=2.5", "exec_id=null"], None, wait) == {
        "timeout": 2.5,
        "exec_id": None,
    }
    overlay = SCHEMAS["mount_overlay"]
    assert parse_assignments(['layer_ids=["a"]'], None, overlay) == {"layer_ids": ["a"]}


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match=r"^signal=soon: signal takes int$"):
        parse_assignments(["signal=soon"], None, SCHEMAS["signal_process"])
    with pytest.raises(ArgumentError, match=r"^spec:= is not JSON: .* at column 2"):
        parse_assignments(["spec:={oops"], None)
    with pytest.raises(ArgumentError, match=r"^spec:=@.*missing.json: No such file"):
        parse_assignments([f"spec:=@{tmp_path}/missing.json"], None)
    with pytest.raises(ArgumentError, match="expected key=value"):
        parse_assignments(["=x"], None)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"ociVersion": "1.1.0"}))
    assert parse_assignments([f"spec:=@{spec}"], None) == {"spec": {"ociVersion": "1.1.0"}}


def test_results_decode_bytes_as_text_or_base64() -> None:
    assert decoded({"data": b"hello\n", "raw": b"\x00\x01", "n": [b"\xff"]}) == {
        "data": "hello\n",
        "raw": {"base64": "AAE="},
        "n": [{"base64": "/w=="}],
    }
    assert decoded(b"\x1b[2J") == {"base64": "G1sySg=="}  # escapes never reach the terminal


def test_ops_lists_operations_with_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ctl", "ops"]) == 0
    out = capsys.readouterr().out
    assert "signal_process container_id:str [exec_id:str|null=null] signal:int" in out
    assert "create_container container_id:str spec:dict [stdin:bool=false]" in out


def test_no_address_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GUESTAGENT_CONNECT", raising=False)
    assert main(["ctl", "status"]) == 2
    assert capsys.readouterr().err == (
        "guestagent ctl: no agent address: give --connect URI or set GUESTAGENT_CONNECT\n"
    )
