"""The CLI's exit codes and messages, against a running agent."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.agent_process import running_agent


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guestagent", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ctl_exit_codes_and_messages(tmp_path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(b"\x00\x01")
    with running_agent() as agent:
        ok = ctl("--connect", agent.uri, "status")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["pid"] == agent.process.pid

        echoed = ctl("--connect", agent.uri, "ping", f"payload@={payload}")
        assert echoed.returncode == 0
        assert json.loads(echoed.stdout) == {"payload": {"base64": "AAE="}}

        unknown = ctl("--connect", agent.uri, "reformat")
        assert unknown.returncode == 1
        assert "protocol.unknown_op: unknown operation 'reformat'" in unknown.stderr

        bad = ctl("--connect", agent.uri, "ping", 'payload:="text"')  # a string, not bytes
        assert bad.returncode == 1
        assert "protocol.invalid_argument" in bad.stderr

        usage = ctl("--connect", agent.uri, "ping", "no-equals-sign")
        assert usage.returncode == 2
        assert "expected key=value" in usage.stderr

    gone = ctl("--connect", "unix:///nonexistent/agent.sock", "status")
    assert gone.returncode == 1
    assert "cannot connect to unix:///nonexistent/agent.sock" in gone.stderr


def test_serve_rejects_a_bad_listen_uri() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "guestagent", "serve", "--listen", "tcp://0.0.0.0:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid transport URI 'tcp://0.0.0.0:1'" in result.stdout + result.stderr


def test_no_command_prints_usage() -> None:
    result = subprocess.run([sys.executable, "-m", "guestagent"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: guestagent" in result.stderr
