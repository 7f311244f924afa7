"""The single pipeline every operation goes through, and the single error-to-wire mapping.

    prepare (facts) -> gate.decide -> deny? raise -> effect -> gate.commit

A denied decision never reaches the effect and never changes state. A failed effect leaves
the policy state as it was (nothing is committed), which is hcsshim's rollback without a
snapshot.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode, TaintedError
from guestagent.protocol.schema import validate_args
from guestagent.server.operation import Call, Operation, Prepared

if TYPE_CHECKING:
    from guestagent.server.agent import Agent

__all__ = ["Dispatcher", "error_to_wire"]

log = logging.getLogger("guestagent.dispatch")


class Dispatcher:
    def __init__(self, agent: Agent, operations: Iterable[Operation]) -> None:
        self.agent = agent
        self.table: dict[str, Operation] = {}
        for operation in operations:
            if operation.name in self.table:
                raise ValueError(f"operation {operation.name!r} registered twice")
            self.table[operation.name] = operation

    def lookup(self, name: str) -> Operation:
        operation = self.table.get(name)
        if operation is None:
            raise AgentError(
                f"unknown operation {name!r}",
                code=ErrorCode.UNKNOWN_OP,
                details={"op": name[:64]},
            )
        return operation

    def validate(self, operation: Operation, args: dict[str, Any]) -> dict[str, Any]:
        return validate_args(operation.args, args)

    def run_inline(self, operation: Operation, args: dict[str, Any]) -> Any:
        if log.isEnabledFor(logging.DEBUG):
            _log_request(operation, args)
        return operation.effect(self.agent, Call(args, args))

    async def run(self, operation: Operation, args: dict[str, Any]) -> Any:
        agent = self.agent
        if log.isEnabledFor(logging.DEBUG):
            _log_request(operation, args)
        if operation.point is None:
            return await _call(operation.effect, agent, Call(args, args))
        prepared = Prepared(args)
        if operation.prepare is not None:
            prepared = await _call(operation.prepare, agent, args)
        try:
            return await self._decide_and_run(operation, args, prepared)
        finally:
            close = getattr(prepared.context, "close", None)
            if close is not None:
                close()  # what prepare took (e.g. a sealed layer copy), allowed or not

    async def _decide_and_run(
        self, operation: Operation, args: dict[str, Any], prepared: Prepared
    ) -> Any:
        agent = self.agent
        assert operation.point is not None
        if not operation.mutating:
            decision = agent.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            call = Call(args, prepared.facts, prepared.context, decision)
            return await _call(operation.effect, agent, call)
        async with agent.mutation_lock:
            agent.check_not_tainted()
            decision = agent.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            call = Call(args, prepared.facts, prepared.context, decision)
            try:
                result = await _call(operation.effect, agent, call)
            except TaintedError as exc:
                # An undo failed: the guest may no longer match the policy state.
                agent.taint(f"{operation.name}: {exc.message}")
                raise
            agent.gate.commit(decision)
            return result


def _log_request(operation: Operation, args: dict[str, Any]) -> None:
    """One debug line per request: the operation, its container and which arguments came
    (not their values: a spec's env may hold secrets)."""
    extra = {"op": operation.name, "point": operation.point, "args": sorted(args)}
    if isinstance(args.get("container_id"), str):
        extra["container_id"] = args["container_id"]
    log.debug("request", extra=extra)


async def _call(function: Any, *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def error_to_wire(exc: BaseException, op: str | None = None) -> dict[str, Any]:
    """Any exception -> the reply's `error` map. Unknown exceptions are bugs: logged in full,
    reported as `internal` without leaking their text."""
    if isinstance(exc, AgentError):
        return exc.to_wire()
    log.error("internal error in %s", op or "request", exc_info=exc)
    return {
        "code": ErrorCode.INTERNAL.value,
        "message": f"internal error while handling {op or 'the request'}; see the agent log",
        "rule": None,
    }
