"""Human-readable rendering of console results: aligned tables, no dependencies.

`render(command, result)` gives the text `guestagent console` prints without `--json`.
Cells are single-line and capped in width, so a hostile process name or policy string cannot
break the layout or smuggle terminal escapes (control characters are shown escaped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from guestagent.policy.summary_text import format_summary
from guestagent.printable import printable
from guestagent.snp.report import parse_report
from guestagent.snp.show import format_report

__all__ = ["cell", "human_bytes", "key_values", "render", "table"]

MAX_CELL = 64


def cell(value: Any, limit: int = MAX_CELL) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(cell(v, limit) for v in value) or "-"
    else:
        text = str(value)
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], limit: int = MAX_CELL) -> str:
    cells = [[cell(v, limit) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v, 200)}" for k, v in pairs)


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"


def _status(r: dict[str, Any]) -> str:
    snp, policy = r.get("snp") or {}, r["policy"]
    backend = f"{snp.get('backend')} ({'SIMULATED' if snp.get('simulated') else 'hardware'})"
    matches = {True: "yes", False: "NO (MISMATCH)", None: "unknown"}[policy["matches_host_data"]]
    return key_values(
        [
            ("version", r["version"]),
            ("pid", r["pid"]),
            ("uptime", f"{r['uptime_seconds']:.1f}s"),
            ("snp backend", backend if snp else "none"),
            ("policy", policy["state"]),
            ("policy digest", policy["digest"]),
            ("HOST_DATA", policy["host_data"]),
            ("digest matches", matches),
            ("insecure", r["insecure"]),
            ("tainted", r["tainted"] or "no"),
        ]
    )


def _report(r: dict[str, Any]) -> str:
    label = "SIMULATED" if r["snp"]["simulated"] else "hardware"
    return f"backend: {r['snp']['backend']} ({label})\n" + format_report(parse_report(r["raw"]))


def _containers(r: dict[str, Any]) -> str:
    headers = ("ID", "STATUS", "PID", "EXIT", "EXECS", "POLICY ENTRY")
    keys = ("container_id", "status", "pid", "exit_code", "execs", "policy_entries")
    return table(headers, ([c[k] for k in keys] for c in r["containers"]))


def _processes(r: dict[str, Any]) -> str:
    headers = ("PID", "PPID", "USER", "CPU%", "CPU s", "RSS", "MEM%", "CONTAINER", "COMMAND")
    rows = (
        (
            p["pid"],
            p["ppid"],
            p["user"],
            p["cpu_percent"],
            p["cpu_seconds"],
            human_bytes(p["rss_bytes"]),
            p["memory_percent"],
            p["container"],
            "  " * p["depth"] + p["command"],
        )
        for p in r["processes"]
    )
    text = table(headers, rows, limit=100)
    return text + ("\n(truncated)" if r["truncated"] else "")


def _mounts(r: dict[str, Any]) -> str:
    headers = ("TARGET", "ROOT HASH", "MODE", "SOURCE", "ALLOWED BY", "POLICY")
    rows = (
        (m["target"], m["root_hash"] or m["policy_root_hash"], m["mode"], m["source"],
         m["allowed_by"], _agreement(m))
        for m in r["layers"]
    )  # fmt: skip
    parts = [table(headers, rows, limit=100)]
    if r["overlays"]:
        rows = ((o["target"], o["container_id"], len(o["layers"])) for o in r["overlays"])
        parts.append(table(("OVERLAY", "CONTAINER", "LAYERS"), rows, limit=100))
    if r["scratch"]:
        rows = ((s["target"], s["encrypted"]) for s in r["scratch"])
        parts.append(table(("SCRATCH", "ENCRYPTED"), rows, limit=100))
    return "\n\n".join(parts)


def _agreement(m: dict[str, Any]) -> str:
    if m["policy_root_hash"] is None:
        return "NOT RECORDED"
    if m["root_hash"] is None:
        return "recorded, not listed"
    return "agrees" if m["root_hash"] == m["policy_root_hash"] else "DIFFERS"


def _network(r: dict[str, Any]) -> str:
    links = table(
        ("INTERFACE", "UP", "MTU", "MAC", "ADDRESSES"),
        ((i["ifname"], i["up"], i["mtu"], i["mac"], i["addresses"]) for i in r["interfaces"]),
        limit=100,
    )
    routes = table(
        ("DESTINATION", "GATEWAY", "DEV", "METRIC"),
        ((x["destination"], x["gateway"], x["ifname"], x["metric"]) for x in r["routes"]),
    )
    return f"{links}\n\n{routes}"


def _decisions(r: dict[str, Any]) -> str:
    rows = (
        (e["seq"], "ALLOW" if e["allowed"] else "DENY", e["point"], e["rule"], e["reason"])
        for e in r["entries"]
    )
    text = table(("SEQ", "VERDICT", "POINT", "RULE", "REASON"), rows, limit=100)
    counters = r.get("counters")
    if counters:
        text += f"\n{counters['allowed']} allowed, {counters['denied']} denied in total"
    return text


def _metrics(r: dict[str, Any]) -> str:
    decisions = r["decisions"] or {}
    console, process = r["console"], r["process"]
    return key_values(
        [
            ("uptime", f"{r['uptime_seconds']:.1f}s"),
            ("agent requests", r["requests"]),
            ("agent connections", r["connections"]),
            ("decisions allowed", decisions.get("allowed")),
            ("decisions denied", decisions.get("denied")),
            ("containers", r["containers"]),
            ("console requests", console["requests"]),
            ("console connections", console["connections"]),
            ("rss", human_bytes(process["rss_bytes"])),
            ("cpu", f"{process['cpu_seconds']}s"),
            ("threads", process["threads"]),
            ("open fds", process["open_fds"]),
        ]
    )


def _trace(r: dict[str, Any]) -> str:
    # The JSON lines themselves (ASCII: json.dumps escapes the rest), ready for
    # `guestagent policy check --trace`; a note only when there are none.
    if r["lines"]:
        return "\n".join(cell(line, 1 << 20) for line in r["lines"])
    return "(tracing: no decision yet)" if r["tracing"] else "(not tracing: `trace start`)"


_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "status": _status,
    "policy": lambda r: format_summary(r).rstrip("\n"),
    "report": _report,
    "containers": _containers,
    "processes": _processes,
    "mounts": _mounts,
    "network": _network,
    "decisions": _decisions,
    "metrics": _metrics,
    "trace": _trace,
}


def render(command: str, result: Any) -> str:
    renderer = _RENDERERS.get(command)
    if renderer is None or not isinstance(result, dict):
        return cell(result, 10_000)
    return renderer(result)
