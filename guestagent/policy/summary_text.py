"""The text form of a policy audit (`policy show`, the console's `policy`).

Every grant is shown, not only the risky ones: layers with their root hashes, capabilities
per set (each one beyond the runtime default marked `!`), signals, gids, sysctls, devices, env
rules, mounts, exec processes. Names are shown as JSON strings, argv as JSON lists, patterns
as written; `format_summary` then escapes every unprintable character of every line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from guestagent.policy.containers import CAPABILITY_SETS
from guestagent.policy.summary import argv_text, printable, signal_name

__all__ = ["format_summary"]


def _q(text: Any) -> str:
    return json.dumps(text, ensure_ascii=False)


def _signals(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return ", ".join(f"{n} ({signal_name(n)})" for n in numbers)


def _caps(names: list[str], default: set[str]) -> str:
    return ", ".join(name if name in default else f"{name}!" for name in names) or "none"


def _capability_lines(c: dict[str, Any]) -> Iterator[str]:
    default = set(c["default_capabilities"])
    caps = c["capabilities"]
    if caps is None:
        yield "  capabilities: runtime default (bounding, effective, permitted):"
        yield f"    {_caps(c['default_capabilities'], default)}"
        return
    yield "  capabilities (! = beyond the runtime default):"
    for name in CAPABILITY_SETS:
        yield f"    {name + ':':<12} {_caps(caps[name], default)}"


def _container_lines(c: dict[str, Any]) -> Iterator[str]:
    yield f"container {_q(c['name'])}"
    yield f"  layers ({len(c['layers'])}, dm-verity root hashes, in policy order):"
    yield from (f"    {i}. {h}" for i, h in enumerate(c["layers"], 1))
    yield f"  command: {argv_text(c['command'])}"
    yield f"  working dir: {_q(c['working_dir'])}"
    user = c["user"]
    gids = ", ".join(str(g) for g in user["additional_gids"]) or "none"
    yield f"  user: uid {user['uid']}, gid {user['gid']}, additional gids: {gids}"
    yield f"  signals the host may send: {_signals(c['signals'])}"
    yield from _capability_lines(c)
    flags = c["flags"]
    yield "  flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
    seccomp = c["seccomp_profile_sha256"] or "none required (the runtime's default applies)"
    yield f"  seccomp profile sha256: {seccomp}"
    yield f"  env rules ({len(c['env_rules'])}):"
    for r in c["env_rules"]:
        required = ", required" if r["required"] else ""
        yield f"    {r['pattern']} [{r['strategy']}{required}]"
    yield f"  mounts ({len(c['mounts'])}):"
    for m in c["mounts"]:
        yield (
            f"    {m['destination']} <- {m['type']} source {m['source']} "
            f"options [{', '.join(m['options'])}]"
        )
    yield f"  devices: {', '.join(_q(d) for d in c['devices']) or 'none'}"
    sysctls = ", ".join(f"{_q(k)}={_q(v)}" for k, v in c["sysctls"].items())
    yield f"  sysctls: {sysctls or 'none'}"
    yield f"  exec processes ({len(c['exec_processes'])}):"
    for p in c["exec_processes"]:
        cwd = f", working dir {_q(p['working_dir'])}" if p["working_dir"] else ""
        yield f"    {argv_text(p['command'])} signals: {_signals(p['signals'])}{cwd}"
    for key, value in c.items():  # fields added to the format after this renderer
        if key not in _SHOWN:
            yield f"  {key}: {json.dumps(value, ensure_ascii=False, sort_keys=True)}"


_SHOWN = frozenset(
    {
        "name", "layers", "command", "working_dir", "user", "signals", "capabilities",
        "default_capabilities", "flags", "seccomp_profile_sha256", "env_rules", "mounts",
        "devices", "sysctls", "exec_processes", "risks",
    }
)  # fmt: skip


def summary_lines(summary: dict[str, Any]) -> Iterator[str]:
    yield f"HOST_DATA {summary['host_data']}"
    yield (
        f"policy version {summary['version']}, "
        f"verity corruption mode {summary['verity_corruption']}"
    )
    for c in summary["containers"]:
        yield ""
        yield from _container_lines(c)
    external = summary.get("external_processes") or []
    if external:
        yield ""
        yield f"external processes ({len(external)}):"
        for p in external:
            yield f"  {argv_text(p['command'])} working dir {_q(p['working_dir'])}"
    yield ""
    risks = summary["risks"]
    yield f"RISKS ({len(risks)})" if risks else "RISKS: none found"
    yield from (f"  ! {risk}" for risk in risks)


def format_summary(summary: dict[str, Any]) -> str:
    """The audit as text; no raw control byte of the policy survives."""
    return "\n".join(printable(line) for line in summary_lines(summary)) + "\n"
