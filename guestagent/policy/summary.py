"""An audit summary of a policy: what each container may run, and every risky grant.

A relying party reads this before trusting a HOST_DATA value, so risks are called out
explicitly rather than left for the reader to spot in the JSON.
"""

from __future__ import annotations

from typing import Any

from guestagent.policy.containers import Container, EnvRule
from guestagent.policy.document import Policy
from guestagent.policy.runtime_fields import DEFAULT_RUNTIME_RULES

__all__ = ["SHELLS", "format_summary", "summarize"]

SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh"})
_PROBE_VALUE = "x-Probe value/with: odd chars;\t and $(stuff)"


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


def _container_risks(c: Container) -> list[str]:
    risks = []
    if c.allow_elevated:
        risks.append("may run privileged (allow_elevated)")
    if is_shell(c.command):
        risks.append(f"runs a shell as its command: {' '.join(c.command)}")
    risks += [
        f"shell allowed for exec: {' '.join(p.command)}"
        for p in c.exec_processes
        if is_shell(p.command)
    ]
    for rule in c.env_rules:
        what = catch_all(rule)
        if what:
            risks.append(f"catch-all env rule {rule.pattern!r} admits {what}")
    risks += [
        f"writable mount {m.destination} (source {m.source.source!r})"
        for m in c.mounts
        if m.writable
    ]
    if c.capabilities is not None and "CAP_SYS_ADMIN" in c.capabilities.effective:
        risks.append("CAP_SYS_ADMIN in the effective set")
    if not c.no_new_privileges:
        risks.append("no_new_privileges not required")
    if c.host_network:
        risks.append("may share the guest's network namespace (host_network)")
    if c.devices:
        risks.append(f"device nodes: {', '.join(sorted(c.devices))}")
    if c.user.uid.lo != c.user.uid.hi:
        risks.append(f"any uid in {c.user.uid.describe()}")
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
    caps = (
        "runtime default (unprivileged)"
        if c.capabilities is None
        else {
            name: sorted(c.capabilities.get(name))
            for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
    )
    return {
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
        "capabilities": caps,
        "exec_processes": [list(p.command) for p in c.exec_processes],
        "mounts": [
            f"{m.type} {m.source.source} -> {m.destination} ({','.join(m.options)})"
            for m in c.mounts
        ],
        "signals": sorted(c.signals),
        "allow_stdio_access": c.allow_stdio_access,
        "risks": _container_risks(c),
    }


def _global_risks(policy: Policy) -> list[str]:
    risks = []
    if policy.allow_unencrypted_scratch:
        risks.append("unencrypted scratch space allowed")
    risks += [
        f"host may run external process: {' '.join(p.command)}"
        + (" (a shell)" if is_shell(p.command) else "")
        for p in policy.external_processes
    ]
    if policy.network.allow_network_changes:
        risks.append(f"network changes allowed: {', '.join(sorted(policy.network.kinds))}")
    if policy.debug_console.enabled:
        commands = ", ".join(sorted(policy.debug_console.commands)) or "none"
        risks.append(f"debug console enabled (commands: {commands})")
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
    return risks


def summarize(policy: Policy, digest: str = "") -> dict[str, Any]:
    containers = [_container(c) for c in policy.containers]
    risks = _global_risks(policy)
    risks += [f"{c['name']}: {r}" for c in containers for r in c["risks"]]
    return {
        "host_data": digest,
        "version": policy.version,
        "verity_corruption": policy.verity_corruption,
        "containers": containers,
        "risks": risks,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text rendering for `policy show`."""
    lines = [
        f"HOST_DATA {summary['host_data']}",
        f"policy version {summary['version']}, "
        f"verity corruption mode {summary['verity_corruption']}",
        "",
    ]
    for c in summary["containers"]:
        lines.append(f"container {c['name']} ({len(c['layers'])} layers)")
        lines.append(f"  command: {' '.join(c['command'])}  (cwd {c['working_dir']})")
        lines.append(f"  user: uid {c['user']['uid']} gid {c['user']['gid']}")
        lines += [f"  exec: {' '.join(argv)}" for argv in c["exec_processes"]]
        lines += [
            f"  env: {r['pattern']} [{r['strategy']}{', required' if r['required'] else ''}]"
            for r in c["env_rules"]
        ]
        lines += [f"  mount: {m}" for m in c["mounts"]]
    lines.append("")
    lines.append(f"RISKS ({len(summary['risks'])})" if summary["risks"] else "RISKS: none found")
    lines += [f"  ! {risk}" for risk in summary["risks"]]
    return "\n".join(lines) + "\n"
