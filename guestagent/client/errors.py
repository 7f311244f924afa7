"""Typed exceptions for error replies: each carries the code, message, rule and details."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentConnectionError",
    "RemoteEffectError",
    "RemoteError",
    "RemotePolicyDenied",
    "RemoteProtocolError",
    "RemoteStateError",
    "error_from_wire",
]


class AgentConnectionError(ConnectionError):
    """The connection failed or closed before the reply arrived."""


class RemoteError(Exception):
    """The agent answered with an error."""

    def __init__(
        self, code: str, message: str, rule: Any = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (rule: {rule})" if rule else ""))
        self.code = code
        self.message = message
        self.rule = rule
        self.details = details or {}


class RemoteProtocolError(RemoteError):
    """protocol.*: the request was malformed."""


class RemotePolicyDenied(RemoteError):
    """policy.*: the policy denied the request, or none is in force."""


class RemoteStateError(RemoteError):
    """state.*: the request does not fit the agent's current state."""


class RemoteEffectError(RemoteError):
    """snp.*, storage.*, runtime.*, network.*: the effect itself failed."""


_BY_PREFIX = {
    "protocol": RemoteProtocolError,
    "policy": RemotePolicyDenied,
    "state": RemoteStateError,
    "snp": RemoteEffectError,
    "storage": RemoteEffectError,
    "runtime": RemoteEffectError,
    "network": RemoteEffectError,
}


def error_from_wire(error: Any) -> RemoteError:
    if not isinstance(error, dict):
        return RemoteError("internal", f"malformed error reply: {error!r:.80}")
    code = str(error.get("code", "internal"))
    cls = _BY_PREFIX.get(code.partition(".")[0], RemoteError)
    return cls(code, str(error.get("message", "")), error.get("rule"), error.get("details"))
