"""`guestagent console`: one-shot and --json through the real CLI in a subprocess, and the
interactive prompt driven through a pseudo-terminal (completion, history, errors)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from console_harness import ALL_COMMANDS, adopt_policy, console_in_thread, policy_bytes

from guestagent.console.render import cell, table
from guestagent.console.shell import CommandLineError, parse_command
from guestagent.policy.measure import measure

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_PROCESSES = [c for c in ALL_COMMANDS if c != "processes"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TERM": "xterm",
        "INPUTRC": "/dev/null",
    }


def cli(tmp_path: Path, uri: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guestagent", "console", "--connect", uri, *words],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )


@pytest.fixture(scope="module")
def console_uri(sim_state):
    """A console whose policy allows everything but `processes`; one denial is logged."""

    def setup(agent):
        adopt_policy(agent, policy_bytes(NO_PROCESSES), sim_state)
        agent.decide("mount_device", {"target": "/t", "device_hash": "11" * 32})

    with console_in_thread(setup) as uri:
        yield uri


def test_one_shot_human_output_for_every_allowed_command(tmp_path, console_uri):
    outputs = {}
    for command in NO_PROCESSES:
        done = cli(tmp_path, console_uri, command)
        assert done.returncode == 0, (command, done.stderr)
        outputs[command] = done.stdout
    digest = measure(policy_bytes(NO_PROCESSES)).host_data_hex
    assert re.search(r"digest matches\s+yes", outputs["status"])
    assert re.search(rf"policy digest\s+{digest}", outputs["status"])
    assert f"HOST_DATA {digest}" in outputs["policy"]
    assert "backend: sim (SIMULATED)" in outputs["report"]
    assert re.search(r"^lo\s+yes\s+65536", outputs["network"], re.M)
    assert re.search(r"^1\s+DENY\s+mount_device\s+mount_device.device_hash", outputs["decisions"],
                     re.M)  # fmt: skip
    assert re.search(r"decisions denied\s+1", outputs["metrics"])
    assert outputs["containers"].split() == ["ID", "STATUS", "PID", "EXIT", "EXECS", "POLICY",
                                             "ENTRY"]  # fmt: skip


def test_json_output_and_arguments(tmp_path, console_uri):
    done = cli(tmp_path, console_uri, "--json", "decisions", "denied", "limit=5")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["filter"] == "denied"
    assert [e["point"] for e in result["entries"]] == ["mount_device"]
    data = "ab" * 64
    report = json.loads(cli(tmp_path, console_uri, "--json", "report", data).stdout)
    assert report["report"]["report_data"] == data
    assert len(base64.b64decode(report["raw"]["base64"])) == 0x4A0  # long bytes: base64


def test_denied_command_exits_1_and_explains(tmp_path, console_uri):
    done = cli(tmp_path, console_uri, "processes")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == (
        "guestagent console: denied: policy.denied: console_processes: console command "
        "processes is not allowed [rule console_processes.command]"
    )


@pytest.mark.parametrize(
    "words, message",
    [
        (["format_disk"], "unknown command 'format_disk'"),
        (["report", "zz"], "report_data: not hex"),
        (["report", "00"], "need 64 bytes"),
        (["decisions", "denied", "5", "7"], "decisions takes no more values"),
        (["status", "x=1"], "status has no parameter 'x'"),
    ],
)
def test_bad_usage_exits_2(tmp_path, console_uri, words, message):
    done = cli(tmp_path, console_uri, *words)
    assert done.returncode == 2 and message in done.stderr


def test_parse_command_positional_and_named():
    assert parse_command(["decisions", "denied", "limit=5"]) == (
        "decisions",
        {"filter": "denied", "limit": 5},
    )
    assert parse_command(["processes", "0x10"]) == ("processes", {"pid": 16})
    with pytest.raises(CommandLineError, match="given twice"):
        parse_command(["decisions", "filter=all", "filter=denied"])


def test_table_aligns_and_escapes_control_characters():
    text = table(("A", "LONGER"), [("x\x1b[31m", 1), (None, True)])
    assert text.splitlines() == ["A          LONGER", "x\\x1b[31m  1", "-          yes"]
    assert cell("y" * 100).endswith("…") and len(cell("y" * 100)) == 64


# -- the interactive prompt, through a pseudo-terminal ------------------------------------------
class Terminal:
    def __init__(self, tmp_path: Path, uri: str) -> None:
        master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "guestagent", "console", "--connect", uri],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(tmp_path),
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.seen = ""

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not seen in {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                assert chunk, f"terminal closed before {text!r}: {self.seen[-2000:]!r}"
                self.seen += chunk.decode(errors="replace")
        found, _, self.seen = self.seen.partition(text)
        return found

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> int:
        try:
            return self.process.wait(timeout=30)
        finally:
            os.close(self.master)


PROMPT = "guestagent console> "


def test_interactive_prompt_completion_history_and_errors(tmp_path, console_uri):
    term = Terminal(tmp_path, console_uri)
    term.expect("Type help for commands.")
    term.expect(PROMPT)
    term.type("deci\t")  # TAB completes the command name
    term.expect("decisions ")
    term.type("den\t")  # and the filter
    term.expect("denied ")
    term.type("\r")
    table_text = term.expect(PROMPT)
    assert re.search(r"DENY\s+mount_device", table_text)
    term.type("processes\r")
    assert "denied: policy.denied: console_processes" in term.expect(PROMPT)
    term.type("report nothex\r")
    assert "error: report_data: not hex" in term.expect(PROMPT)
    term.type("help\r")
    assert "decisions [filter] [limit]" in term.expect(PROMPT)
    term.type("status\r")
    assert re.search(r"digest matches\s+yes", term.expect(PROMPT))
    term.type("\x04")  # Ctrl-D leaves
    assert term.close() == 0
    history = (tmp_path / "cache" / "guestagent" / "console_history").read_text().splitlines()
    assert history[-5:] == ["decisions denied ", "processes", "report nothex", "help", "status"]

    again = Terminal(tmp_path, console_uri)  # a new session recalls the history
    again.expect(PROMPT)
    again.type("\x1b[A\r")  # Up: the last command, status
    assert re.search(r"digest matches\s+yes", again.expect(PROMPT))
    again.type("quit\r")
    assert again.close() == 0


def test_unwritable_history_is_harmless(tmp_path, console_uri):
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    term = Terminal(tmp_path, console_uri)
    term.expect(PROMPT)
    term.type("metrics\r")
    assert "console requests" in term.expect(PROMPT)
    term.type("exit\r")
    assert term.close() == 0


def test_trace_start_show_stop_gives_a_trace_policy_check_replays(tmp_path, console_uri):
    assert "not tracing" in cli(tmp_path, console_uri, "trace").stdout
    assert cli(tmp_path, console_uri, "trace", "start").returncode == 0
    assert cli(tmp_path, console_uri, "status").returncode == 0
    denied = cli(tmp_path, console_uri, "processes")
    assert denied.returncode == 1
    stopped = cli(tmp_path, console_uri, "trace", "stop")
    assert stopped.returncode == 0, stopped.stderr
    lines = stopped.stdout.splitlines()
    points = [json.loads(line)["point"] for line in lines]
    # `trace start` was decided before recording began; `trace stop` while it was on.
    assert points == ["console_status", "console_processes", "console_trace"]
    trace = tmp_path / "trace.jsonl"
    trace.write_text(stopped.stdout)
    policy = tmp_path / "policy.json"
    policy.write_bytes(policy_bytes(NO_PROCESSES))
    check = subprocess.run(
        [sys.executable, "-m", "guestagent", "policy", "check", str(policy), "--trace", str(trace)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert check.returncode == 1  # the one denial
    assert "3 requests, 2 allowed, 1 denied; all 3 recorded decisions reproduced" in check.stdout
    assert "not tracing" in cli(tmp_path, console_uri, "trace", "show").stdout
