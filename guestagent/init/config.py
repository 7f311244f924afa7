"""What `guestagent init` runs and how: from its arguments, the kernel command line and the
launch configuration file. Pure: callers pass the texts in.

The agent command line is resolved, first match wins:
1. the arguments after `--` (`guestagent init -- guestagent serve ...`);
2. `guestagent.agent="<command line>"` on the kernel command line;
3. `python3 -m guestagent serve --listen <listen> <serve_args>`, where each value comes from the
   kernel command line (`guestagent.listen=`, `guestagent.serve_args=`) or else the
   configuration file (`GUESTAGENT_LISTEN=`, `GUESTAGENT_SERVE_ARGS=`).
Under SEV-SNP measured direct boot the command line is measured with the kernel, and the file
lies in the verity-protected root filesystem, so every source is covered by the attestation.
Unknown `guestagent.*` parameters and unknown file keys are errors: a typo must not silently
fall back to a default. Options that weaken enforcement (`WEAKENING_OPTIONS`) are refused when
they come from the kernel command line: the host writes it, and not every firmware measures it.
They may come only from the configuration file in the measured root filesystem. (On SEV-SNP
hardware the agent refuses those modes anyway, wherever they come from.)
"""

from __future__ import annotations

import shlex
import sys

from guestagent.errors import InvalidArgumentError
from guestagent.records import field, record

__all__ = [
    "AGENT_MODULES",
    "CMDLINE_KEYS",
    "ENV_KEYS",
    "InitConfig",
    "parse_cmdline",
    "parse_env_file",
    "resolve_config",
]

# Kernel modules the agent needs (dm-verity layers, dm-integrity + dm-crypt scratch disks,
# overlays, loop files, erofs, the vsock and virtio-serial transports, container networking).
# Already-loaded and built-in ones are skipped.
AGENT_MODULES: tuple[str, ...] = (
    "virtio_console",
    "dm_mod",
    "dm_verity",
    "dm_integrity",
    "dm_crypt",
    "xts",
    "overlay",
    "loop",
    "erofs",
    "vsock",
    "vmw_vsock_virtio_transport",
    "vsock_loopback",
    "veth",
)

# guestagent.* kernel parameters: root_* are consumed by the initramfs, the rest here.
CMDLINE_KEYS = frozenset(
    {"root", "root_hash", "root_salt", "root_blocks", "agent", "listen", "serve_args", "hostname"}
)
ENV_KEYS = frozenset({"GUESTAGENT_LISTEN", "GUESTAGENT_SERVE_ARGS", "GUESTAGENT_HOSTNAME"})
WEAKENING_OPTIONS = ("--insecure-allow-all", "--storage-mode")
DEFAULT_LISTEN = "serial://agent.0"
DEFAULT_HOSTNAME = "guestagent"


@record(kw_only=True)
class InitConfig:
    agent_argv: tuple[str, ...]
    hostname: str
    modules: tuple[str, ...] = AGENT_MODULES
    cmdline: dict[str, str] = field(default_factory=dict)


def parse_cmdline(text: str) -> dict[str, str]:
    """The `guestagent.*` parameters of a kernel command line, prefix removed."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"kernel command line does not parse: {exc}") from exc
    params: dict[str, str] = {}
    for word in words:
        if not word.startswith("guestagent."):
            continue
        key, sep, value = word.removeprefix("guestagent.").partition("=")
        if key not in CMDLINE_KEYS:
            raise InvalidArgumentError(f"unknown kernel parameter guestagent.{key}")
        if not sep:
            raise InvalidArgumentError(f"kernel parameter guestagent.{key} has no value")
        if key in params:
            raise InvalidArgumentError(f"kernel parameter guestagent.{key} given twice")
        params[key] = value
    return params


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments, optional quotes)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in ENV_KEYS:
            raise InvalidArgumentError(f"configuration line {number}: unknown or malformed {key!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _split(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"{what} does not parse: {exc}") from exc


def _valid_hostname(name: str) -> str:
    labels = name.split(".")
    ok = 0 < len(name) <= 64 and all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )
    if not ok:
        raise InvalidArgumentError(f"invalid hostname {name!r}")
    return name


def _refuse_weakening(words: list[str], what: str) -> list[str]:
    for word in words:
        if word.split("=", 1)[0] in WEAKENING_OPTIONS:
            raise InvalidArgumentError(
                f"{what} on the kernel command line may not carry {word.split('=', 1)[0]}: "
                "settings that weaken enforcement come only from the measured image"
            )
    return words


def resolve_config(
    explicit_argv: list[str], cmdline_text: str, env_text: str, python: str = sys.executable
) -> InitConfig:
    """Combine the three sources into the command to supervise (see the module docstring)."""
    cmdline = parse_cmdline(cmdline_text)
    env = parse_env_file(env_text)
    if explicit_argv:
        argv = list(explicit_argv)
    elif "agent" in cmdline:
        argv = _refuse_weakening(_split(cmdline["agent"], "guestagent.agent"), "guestagent.agent")
    else:
        listen = cmdline.get("listen") or env.get("GUESTAGENT_LISTEN") or DEFAULT_LISTEN
        argv = [python, "-m", "guestagent", "serve", "--listen", listen]
        if "serve_args" in cmdline:
            words = _split(cmdline["serve_args"], "guestagent.serve_args")
            argv += _refuse_weakening(words, "guestagent.serve_args")
        else:
            argv += _split(env.get("GUESTAGENT_SERVE_ARGS", ""), "serve arguments")
    if not argv or not argv[0]:
        raise InvalidArgumentError("empty agent command line")
    hostname = cmdline.get("hostname", env.get("GUESTAGENT_HOSTNAME", DEFAULT_HOSTNAME))
    return InitConfig(agent_argv=tuple(argv), hostname=_valid_hostname(hostname), cmdline=cmdline)
