"""Where the agent command line, the hostname and the rest come from."""

from __future__ import annotations

import pytest

from guestagent.errors import InvalidArgumentError
from guestagent.init.config import parse_cmdline, parse_env_file, resolve_config

ENV = "# comment\nGUESTAGENT_LISTEN=serial://agent.0\nGUESTAGENT_SERVE_ARGS='--snp sim'\n"


def test_cmdline_keeps_only_guestagent_parameters_and_unquotes() -> None:
    text = 'console=ttyS0 guestagent.root_hash=ab guestagent.agent="busybox sh /dev/vdb" quiet\n'
    assert parse_cmdline(text) == {"root_hash": "ab", "agent": "busybox sh /dev/vdb"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("guestagent.rot_hash=ab", "unknown kernel parameter guestagent.rot_hash"),
        ("guestagent.listen", "has no value"),
        ("guestagent.listen=a guestagent.listen=b", "given twice"),
        ('guestagent.agent="unterminated', "does not parse"),
    ],
)
def test_cmdline_errors_fail_closed(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_cmdline(text)


def test_env_file_reads_systemd_style_values() -> None:
    assert parse_env_file(ENV + 'GUESTAGENT_HOSTNAME="g1"\n') == {
        "GUESTAGENT_LISTEN": "serial://agent.0",
        "GUESTAGENT_SERVE_ARGS": "--snp sim",
        "GUESTAGENT_HOSTNAME": "g1",
    }


@pytest.mark.parametrize("line", ["GUESTAGENT_LISTN=x", "just words", "PATH=/bin"])
def test_env_file_rejects_unknown_or_malformed_lines(line: str) -> None:
    with pytest.raises(InvalidArgumentError, match="line 2"):
        parse_env_file(f"GUESTAGENT_LISTEN=x\n{line}\n")


def test_default_agent_is_serve_with_file_settings() -> None:
    config = resolve_config([], "console=ttyS0", ENV, python="/usr/bin/python3")
    assert config.agent_argv == (
        "/usr/bin/python3",
        "-m",
        "guestagent",
        "serve",
        "--listen",
        "serial://agent.0",
        "--snp",
        "sim",
    )
    assert config.hostname == "guestagent"


def test_cmdline_overrides_the_file() -> None:
    cmdline = 'guestagent.listen=vsock://any:1024 guestagent.serve_args="" guestagent.hostname=h2'
    config = resolve_config([], cmdline, ENV, python="py")
    assert config.agent_argv == ("py", "-m", "guestagent", "serve", "--listen", "vsock://any:1024")
    assert config.hostname == "h2"


def test_agent_parameter_replaces_the_serve_command() -> None:
    config = resolve_config([], 'guestagent.agent="busybox sh /dev/vdb"', ENV)
    assert config.agent_argv == ("busybox", "sh", "/dev/vdb")


def test_explicit_arguments_win() -> None:
    config = resolve_config(["sleep", "1"], 'guestagent.agent="busybox sh"', ENV)
    assert config.agent_argv == ("sleep", "1")


def test_missing_file_falls_back_to_the_default_listen_uri() -> None:
    config = resolve_config([], "", "", python="py")
    assert config.agent_argv[-2:] == ("--listen", "serial://agent.0")


@pytest.mark.parametrize("name", ["", "a b", "-" * 65, "bad_name", "x..y", "émoji"])
def test_invalid_hostnames_are_rejected(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="hostname"):
        resolve_config(["true"], f'guestagent.hostname="{name}"', "")


def test_empty_agent_command_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="empty agent"):
        resolve_config([], 'guestagent.agent=""', "")


@pytest.mark.parametrize(
    "cmdline",
    [
        'guestagent.serve_args="--snp none --insecure-allow-all"',
        'guestagent.serve_args="--storage-mode=verified-loop"',
        'guestagent.agent="python3 -m guestagent serve --storage-mode verified-loop"',
    ],
)
def test_weakening_options_never_come_from_the_kernel_command_line(cmdline):
    with pytest.raises(InvalidArgumentError, match="weaken enforcement"):
        resolve_config([], cmdline, "")
    # The measured configuration file may set them (a development image).
    env = 'GUESTAGENT_SERVE_ARGS="--snp none --insecure-allow-all"\n'
    assert "--insecure-allow-all" in resolve_config([], "", env, python="py").agent_argv
