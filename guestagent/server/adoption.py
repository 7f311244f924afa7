"""Adopting the execution policy: only if its digest equals HOST_DATA in a fresh report.

HOST_DATA is set by the host at launch and signed by the secure processor in every report,
so a policy whose digest matches it is the one the relying party saw measured. The report is
fetched fresh, over a random nonce, at adoption time. A mismatch is final: the agent stays
in deny-all for the rest of its life, and status shows both digests.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode
from guestagent.policy.gate import DenyAllGate, PolicyGate
from guestagent.policy.measure import adopt
from guestagent.snp import parse_report

if TYPE_CHECKING:
    from guestagent.server.agent import Agent

__all__ = ["adopt_policy"]

log = logging.getLogger("guestagent.policy")


def adopt_policy(agent: Agent, policy_bytes: bytes, source: str) -> dict[str, Any]:
    """Measure, compare with HOST_DATA, and install the policy gate; raise on refusal."""
    if isinstance(agent.gate, PolicyGate):
        raise AgentError(
            f"a policy is already in force (digest {agent.gate.digest}); it cannot be replaced",
            code=ErrorCode.POLICY_ALREADY_SET,
        )
    if agent.policy_refused:
        raise AgentError(agent.gate.describe()["reason"], code=ErrorCode.POLICY_MISMATCH)
    if agent.snp is None:
        raise AgentError(
            f"cannot adopt a policy without an SEV-SNP backend: {agent.snp_error}",
            code=ErrorCode.SNP_UNAVAILABLE,
        )
    nonce = secrets.token_bytes(64)
    report = parse_report(agent.snp.get_report(nonce))
    if not hmac.compare_digest(report.report_data, nonce):
        # Whatever backend answered, a report not over this nonce may be a replayed one.
        raise AgentError(
            "the SNP report does not carry the adoption nonce in REPORT_DATA (stale or "
            "replayed report); policy not adopted",
            code=ErrorCode.SNP_BAD_REPORT,
        )
    result = adopt(policy_bytes, report.host_data)
    if not result.accepted or result.policy is None or result.measurement is None:
        agent.policy_refused = True
        reason = (
            f"policy from {source} refused: {result.reason} "
            f"(HOST_DATA {result.expected_hex}, delivered {result.actual_hex or 'unmeasurable'})"
        )
        agent.gate = DenyAllGate(reason, code=ErrorCode.POLICY_MISMATCH)
        log.error("policy refused", extra={"source": source, "reason": result.reason})
        raise AgentError(
            reason,
            code=result.code or ErrorCode.POLICY_MISMATCH,
            details={"host_data": result.expected_hex, "policy_digest": result.actual_hex},
        )
    digest = result.measurement.host_data_hex
    agent.gate = PolicyGate(result.policy, digest=digest, log_sink=agent.log_decision)
    log.info("policy adopted", extra={"source": source, "digest": digest})
    return {
        "digest": digest,
        "format": result.measurement.format,
        "containers": [c.name for c in result.policy.containers],
    }
