"""An audit summary of a policy: everything it grants, and every risky grant called out.

A relying party reads this before trusting a HOST_DATA value, so risks are named explicitly
rather than left for the reader to spot in the JSON. The text form is hostile-input safe:
every unprintable character of every line is escaped (`printable`), argv is shown as a JSON
list, so a name or argument holding terminal escapes cannot rewrite what the auditor sees.
"""

from __future__ import annotations

import json
from typing import Any

from guestagent.capabilities import DEFAULT_UNPRIVILEGED_CAPABILITIES
from guestagent.policy.containers import CAPABILITY_SETS, Container, EnvRule
from guestagent.policy.document import Policy
from guestagent.policy.runtime_fields import DEFAULT_RUNTIME_RULES
from guestagent.printable import printable

__all__ = ["DANGEROUS_CAPABILITIES", "SHELLS", "argv_text", "printable", "signal_name", "summarize"]

SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh"})
_PROBE_VALUE = "x-Probe value/with: odd chars;\t and $(stuff)"
# Why a capability beyond the runtime default matters; any other one outside the default set
# is still flagged, as "beyond the runtime default".
DANGEROUS_CAPABILITIES = {
    "CAP_SYS_ADMIN": "mounts, namespaces, most of root's powers",
    "CAP_SYS_MODULE": "loads kernel modules",
    "CAP_SYS_RAWIO": "raw device and I/O port access",
    "CAP_SYS_PTRACE": "traces and reads other processes",
    "CAP_DAC_READ_SEARCH": "opens any file by handle (escapes the root)",
    "CAP_NET_ADMIN": "reconfigures the network",
    "CAP_BPF": "loads BPF programs",
    "CAP_PERFMON": "kernel performance monitoring",
    "CAP_SYS_BOOT": "reboots the guest",
    "CAP_SYS_TIME": "sets the clock",
    "CAP_MAC_ADMIN": "changes mandatory access control",
    "CAP_MAC_OVERRIDE": "overrides mandatory access control",
    "CAP_SYSLOG": "reads the kernel log and kernel addresses",
}


# Linux x86-64/arm64 signals 1..31, in order; 32 and 33 belong to the C library.
_SIGNAL_NAMES = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
)  # fmt: skip


def argv_text(argv: Any) -> str:
    return json.dumps(list(argv), ensure_ascii=False)


def is_shell(argv: tuple[str, ...]) -> bool:
    """A shell, directly or through busybox (`busybox sh`)."""
    name = argv[0].rsplit("/", 1)[-1]
    if name == "busybox" and len(argv) > 1:
        name = argv[1].rsplit("/", 1)[-1]
    return name in SHELLS


def catch_all(rule: EnvRule) -> str | None:
    """'any variable' or 'any value of NAME' for rules that let arbitrary input through."""
    if rule.compiled is None:
        return None
    if rule.matches("ZZ_ANY_NAME_PROBE=" + _PROBE_VALUE):
        return "any variable"
    name = rule.pattern.split("=", 1)[0]
    if "=" in rule.pattern and rule.matches(f"{name}={_PROBE_VALUE}"):
        return f"any value of {name}"
    return None


def signal_name(number: int) -> str:
    """The kernel's name for a Linux signal number (pure: no `signal` import here)."""
    if 1 <= number <= len(_SIGNAL_NAMES):
        return "SIG" + _SIGNAL_NAMES[number - 1]
    return f"SIGRTMIN+{number - 34}" if number >= 34 else f"signal {number}"


def _capability_risks(sets: dict[str, list[str]]) -> list[str]:
    """One risk per capability beyond the runtime default, naming every set that holds it."""
    holders: dict[str, list[str]] = {}
    for set_name in CAPABILITY_SETS:
        for cap in sets[set_name]:
            if cap not in DEFAULT_UNPRIVILEGED_CAPABILITIES:
                holders.setdefault(cap, []).append(set_name)
    return [
        f"{cap} ({DANGEROUS_CAPABILITIES.get(cap, 'beyond the runtime default')}) "
        f"in the {', '.join(where)} set{'s' if len(where) > 1 else ''}"
        for cap, where in sorted(holders.items())
    ]


def _container_risks(c: Container, caps: dict[str, list[str]] | None) -> list[str]:
    risks = []
    if c.allow_elevated:
        risks.append("may run privileged (allow_elevated)")
    if is_shell(c.command):
        risks.append(f"runs a shell as its command: {argv_text(c.command)}")
    risks += [
        f"shell allowed for exec: {argv_text(p.command)}"
        for p in c.exec_processes
        if is_shell(p.command)
    ]
    for rule in c.env_rules:
        what = catch_all(rule)
        if what:
            risks.append(f"catch-all env rule {rule.pattern} admits {what}")
    risks += [
        f"writable mount {m.destination} (source {m.source.source})" for m in c.mounts if m.writable
    ]
    if caps is not None:
        risks += _capability_risks(caps)
    if not c.no_new_privileges:
        risks.append("no_new_privileges not required")
    if c.host_network:
        risks.append("may share the guest's network namespace (host_network)")
    risks += [f"joins the {ns} namespace of {owner}" for ns, owner in sorted(c.joins.items())]
    if c.devices:
        risks.append(f"device nodes: {', '.join(sorted(c.devices))}")
    if c.sysctls:
        risks.append(f"sets sysctls: {', '.join(sorted(c.sysctls))}")
    if c.user.uid.lo != c.user.uid.hi:
        risks.append(f"any uid in {c.user.uid.describe()}")
    elif c.user.uid.lo == 0:
        risks.append("runs as root (uid 0)")
    if c.allow_terminal:
        risks.append("may be given a terminal")
    if c.attestation_socket:
        risks.append("may use the attestation service")
    risks += _runtime_risks(c)
    return risks


def _runtime_risks(c: Container) -> list[str]:
    """Runtime fields (policy/runtime_fields.py) that loosen the agent's defaults."""
    runtime, risks = c.runtime, []
    extra = sorted(
        (runtime.masked_paths - DEFAULT_RUNTIME_RULES.masked_paths)
        | (runtime.readonly_paths - DEFAULT_RUNTIME_RULES.readonly_paths)
    )
    if extra:
        risks.append(f"the host may mask or make read-only: {', '.join(extra)}")
    if runtime.oom_score_adj[0] < 0:
        low = runtime.oom_score_adj[0]
        risks.append(f"oomScoreAdj down to {low} (shielded from the OOM killer)")
    return risks


def _container(c: Container) -> dict[str, Any]:
    caps = None
    if c.capabilities is not None:
        caps = {name: sorted(c.capabilities.get(name)) for name in CAPABILITY_SETS}
    summary: dict[str, Any] = {
        "name": c.name,
        "layers": list(c.layers),
        "command": list(c.command),
        "working_dir": c.working_dir,
        "user": {
            "uid": c.user.uid.describe(),
            "gid": c.user.gid.describe(),
            "additional_gids": sorted(c.user.additional_gids),
        },
        "env_rules": [
            {"pattern": r.pattern, "strategy": r.strategy, "required": r.required}
            for r in c.env_rules
        ],
        # None: the runtime default (unprivileged) set in bounding, effective and permitted.
        "capabilities": caps,
        "default_capabilities": sorted(DEFAULT_UNPRIVILEGED_CAPABILITIES),
        "exec_processes": [
            {
                "command": list(p.command),
                "signals": sorted(p.signals),
                "working_dir": p.working_dir,
            }
            for p in c.exec_processes
        ],
        "mounts": [
            {
                "type": m.type,
                "source": m.source.source,
                "destination": m.destination,
                "options": list(m.options),
            }
            for m in c.mounts
        ],
        "signals": sorted(c.signals),
        "devices": sorted(c.devices),
        "sysctls": dict(sorted(c.sysctls.items())),
        "seccomp_profile_sha256": c.seccomp_profile_sha256,
        "joins": dict(sorted(c.joins.items())),
        "flags": {
            name: getattr(c, name)
            for name in (
                "no_new_privileges",
                "allow_stdio_access",
                "allow_elevated",
                "allow_terminal",
                "host_network",
                "attestation_socket",
            )
        },
        "risks": _container_risks(c, caps),
    }
    return summary


def _global_risks(policy: Policy) -> list[str]:
    risks = []
    if policy.allow_unencrypted_scratch:
        risks.append("unencrypted scratch space allowed")
    risks += [
        f"host may run external process: {argv_text(p.command)}"
        + (" (a shell)" if is_shell(p.command) else "")
        for p in policy.external_processes
    ]
    if policy.network.allow_network_changes:
        risks.append(f"network changes allowed: {', '.join(sorted(policy.network.kinds))}")
    if policy.debug_console.enabled:
        commands = ", ".join(sorted(policy.debug_console.commands)) or "none"
        risks.append(f"debug console enabled (commands: {commands})")
        if "trace" in policy.debug_console.commands:
            risks.append("the console may export request traces (env values included)")
    if policy.allow_dump_stacks:
        risks.append("stack dumps allowed")
    if policy.allow_runtime_logging:
        risks.append("runtime logging allowed (guest logs leave the TEE)")
    if policy.allow_properties_access:
        risks.append("properties access allowed")
    if policy.allow_environment_variable_dropping:
        risks.append("unlisted environment variables are dropped rather than denied")
    if policy.allow_capability_dropping:
        risks.append("unlisted capabilities are dropped rather than denied")
    if policy.copy_file.destinations:
        risks.append(
            "file copy into the guest allowed: "
            + ", ".join(p.source for p in policy.copy_file.destinations)
        )
        if policy.copy_file.symlinks:
            risks.append("file copy may make symlinks (to copy destinations)")
        owners = (policy.copy_file.uid.describe(), policy.copy_file.gid.describe())
        if owners != (0, 0):
            risks.append(f"copied files may be owned by uid {owners[0]}, gid {owners[1]}")
    return risks


def summarize(policy: Policy, digest: str = "") -> dict[str, Any]:
    containers = [_container(c) for c in policy.containers]
    risks = _global_risks(policy)
    risks += [f"{json.dumps(c['name'])}: {r}" for c in containers for r in c["risks"]]
    return {
        "host_data": digest,
        "version": policy.version,
        "verity_corruption": policy.verity_corruption,
        "containers": containers,
        "external_processes": [
            {"command": list(p.command), "working_dir": p.working_dir}
            for p in policy.external_processes
        ],
        "risks": risks,
    }
