"""Console commands that read the agent: status, policy, report, containers, mounts, decisions.

Everything comes through the `AgentView`; the gate's optional parts (policy, digest, engine
state, decision log) exist only once a policy is adopted, and each reader says so when they
are absent instead of guessing.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode, InvalidStateError
from guestagent.policy.summary import summarize
from guestagent.snp.cert_table import certificates_json
from guestagent.snp.report import parse_report

if TYPE_CHECKING:
    from guestagent.console.view import AgentView
    from guestagent.policy.document import Policy
    from guestagent.policy.state import PolicyState
    from guestagent.snp.backend import SnpBackend

__all__ = ["containers", "decisions", "mounts", "policy", "report", "status"]

_FILTERS = {"all": None, "allowed": True, "denied": False}


def _policy(view: AgentView) -> Policy | None:
    return getattr(view.gate, "policy", None)


def _engine_state(view: AgentView) -> PolicyState | None:
    return getattr(view.gate, "state", None)


def _digest(view: AgentView) -> str:
    return str(getattr(view.gate, "digest", "") or "")


def _require_snp(view: AgentView) -> SnpBackend:
    if view.snp is None:
        raise AgentError("no SEV-SNP backend is open in this agent", code=ErrorCode.SNP_UNAVAILABLE)
    return view.snp


def _snp_summary(backend: SnpBackend) -> dict[str, Any]:
    described = backend.describe()
    summary = {"backend": described.get("name"), "simulated": bool(backend.simulated)}
    if "warning" in described:
        summary["warning"] = described["warning"]
    return summary


async def _host_data(backend: SnpBackend) -> tuple[str | None, str | None]:
    """HOST_DATA from a fresh report (hex), or the error that prevented reading it."""
    try:
        raw = await asyncio.to_thread(backend.get_report, bytes(64))
        return parse_report(raw).host_data.hex(), None
    except AgentError as exc:
        return None, f"{exc.code.value}: {exc.message}"


async def status(view: AgentView) -> dict[str, Any]:
    agent = view.status()
    gate = view.gate.describe()
    digest = _digest(view)
    policy: dict[str, Any] = {
        "state": gate.get("state"),
        "reason": gate.get("reason"),
        "digest": digest or None,
        "host_data": None,
        "matches_host_data": None,  # unknown without both a digest and a report
    }
    out: dict[str, Any] = {
        "version": agent.get("version"),
        "pid": agent.get("pid"),
        "uptime_seconds": agent.get("uptime_seconds"),
        "insecure": bool(agent.get("insecure", False)),
        "tainted": agent.get("tainted"),
        "snp": None,
        "policy": policy,
    }
    if view.snp is not None:
        out["snp"] = _snp_summary(view.snp)
        policy["host_data"], error = await _host_data(view.snp)
        if error:
            policy["host_data_error"] = error
    if digest and policy["host_data"]:
        policy["matches_host_data"] = hmac.compare_digest(digest, policy["host_data"])
    return out


def policy(view: AgentView) -> dict[str, Any]:
    document = _policy(view)
    if document is None:
        reason = view.gate.describe().get("reason", "")
        raise InvalidStateError(f"no policy is adopted: {reason}")
    return summarize(document, _digest(view))


async def report(view: AgentView, report_data: bytes) -> dict[str, Any]:
    """A fresh report, and the certificates the platform supplies with it (as the attestation
    socket gives them): what a relying party verifies."""
    backend = _require_snp(view)
    raw, table = await asyncio.to_thread(backend.get_extended_report, report_data)
    return {
        "snp": _snp_summary(backend),
        "report": parse_report(raw).to_json(),
        "raw": raw,
        "certificates": certificates_json(table),
    }


def _entry_names(view: AgentView) -> dict[str, list[str]]:
    """container id -> the names of the policy entries it still matches."""
    document, state = _policy(view), _engine_state(view)
    if document is None or state is None:
        return {}
    return {
        cid: [document.containers[i].name for i in indices]
        for cid, indices in state.candidates.items()
    }


def containers(view: AgentView) -> dict[str, Any]:
    entries = _entry_names(view)
    rows = []
    for item in view.containers.list() if view.containers is not None else []:
        cid = item["container_id"]
        rows.append(
            {
                "container_id": cid,
                "status": item.get("status"),
                "pid": item.get("pid"),
                "exit_code": item.get("exit_code"),
                "execs": len(item.get("execs", [])),
                "policy_entries": entries.get(cid, []),
            }
        )
    known = {row["container_id"] for row in rows}
    for cid in sorted(set(entries) - known):  # root filesystem mounted, not created yet
        rows.append(
            {
                "container_id": cid,
                "status": "prepared",
                "pid": None,
                "exit_code": None,
                "execs": 0,
                "policy_entries": entries[cid],
            }
        )
    return {"containers": rows}


def _allowed_by(document: Policy | None, root_hash: str | None) -> list[str]:
    if document is None or not root_hash:
        return []
    return [c.name for c in document.containers if root_hash in c.layers]


def mounts(view: AgentView) -> dict[str, Any]:
    """Layers as mounted (the storage view) beside what the policy engine recorded."""
    document, state = _policy(view), _engine_state(view)
    recorded = dict(state.devices) if state is not None else {}
    layers = []
    for item in view.storage_view():
        target, root = item.get("target"), item.get("root_hash")
        layers.append(
            {
                "target": target,
                "root_hash": root,
                "policy_root_hash": recorded.get(target),
                "source": item.get("source") or item.get("device"),
                "mode": item.get("mode"),
                "layer_id": item.get("layer_id"),
                "allowed_by": _allowed_by(document, root),
            }
        )
    listed = {row["target"] for row in layers}
    for target, root in sorted(recorded.items()):
        if target not in listed:  # the engine allowed it but storage does not list it
            layers.append(
                {
                    "target": target,
                    "root_hash": None,
                    "policy_root_hash": root,
                    "source": None,
                    "mode": None,
                    "layer_id": None,
                    "allowed_by": _allowed_by(document, root),
                }
            )
    overlays, scratch = [], []
    if state is not None:
        overlays = [
            {"target": t, "container_id": o.container_id, "layers": list(o.layers)}
            for t, o in sorted(state.overlays.items())
        ]
        scratch = [{"target": t, "encrypted": e} for t, e in sorted(state.scratch.items())]
    return {"layers": layers, "overlays": overlays, "scratch": scratch}


def decisions(view: AgentView, which: str, limit: int) -> dict[str, Any]:
    log = getattr(view.gate, "log", None)
    if log is None:
        return {"filter": which, "entries": [], "counters": None}
    entries = [dict(e) for e in log.entries(allowed=_FILTERS[which], limit=limit)]
    return {"filter": which, "entries": entries, "counters": log.counters()}
