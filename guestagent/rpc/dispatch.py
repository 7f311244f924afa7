"""The single pipeline every operation goes through, and the single error-to-wire mapping.

    prepare (facts) -> gate.decide -> deny? raise -> effect -> gate.commit

A denied decision never reaches the effect and never changes state. A failed effect leaves
the policy state as it was (nothing is committed), which is hcsshim's rollback without a
snapshot.

Requests about the same resources (`Operation.keys`: a container, a layer) run one after
another, from prepare to the end of the effect (rpc/resources.py); requests about others do
not wait for them. Only operations whose enforcement point changes the policy state
(`MUTATING_POINTS`) take the host's mutation lock, and only while no external process runs:
those marked `reserves` (layers, scratch, container lifecycle: their effects wait on
veritysetup, mkfs or the runtime) decide and commit under it (the committed state is the
reservation: concurrent decisions see the resource as taken, and anything the policy counts
counts it), run the effect without it, and on failure revert the reservation under it
again. The overlay operations (one mount(2) call, no process) decide, mount and commit
under it. Everything else (reads, and effects the policy rules on without recording them:
exec_external, copy_file, network changes) runs without it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from guestagent.errors import AgentError, ErrorCode, TaintedError
from guestagent.policy.points import MUTATING_POINTS
from guestagent.protocol.schema import validate_args
from guestagent.rpc.operation import Call, Operation, Prepared
from guestagent.rpc.resources import ResourceLocks

if TYPE_CHECKING:
    from guestagent.policy.decision import Decision
    from guestagent.policy.gate import Gate

__all__ = ["Dispatcher", "PolicyHost", "StatefulHost", "error_to_wire"]

log = logging.getLogger("guestagent.dispatch")


class PolicyHost(Protocol):
    """What the pipeline needs from a service whose operations only read."""

    def decide(
        self, point: str, facts: Mapping[str, Any], args: Mapping[str, Any] | None = None
    ) -> Decision:
        """The gate's decision on `facts`; `args` (the operation's arguments) may be traced."""
        ...


class StatefulHost(PolicyHost, Protocol):
    """...and from one whose operations change the policy state (the agent)."""

    mutation_lock: asyncio.Lock

    @property
    def gate(self) -> Gate: ...

    def check_not_tainted(self) -> None: ...

    def taint(self, why: str) -> None: ...


class Dispatcher:
    def __init__(self, agent: PolicyHost, operations: Iterable[Operation]) -> None:
        self.agent = agent
        self.resources = ResourceLocks()
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
        host = self.agent
        if log.isEnabledFor(logging.DEBUG):
            _log_request(operation, args)
        if operation.point is None:
            return await _call(operation.effect, host, Call(args, args))
        if operation.keys is None or not operation.mutating:
            return await self._prepare_and_run(operation, args)
        async with self.resources.hold(operation.keys(args)):
            return await self._prepare_and_run(operation, args)

    async def _prepare_and_run(self, operation: Operation, args: dict[str, Any]) -> Any:
        host = self.agent
        prepared = Prepared(args)
        if operation.prepare is not None:
            prepared = await _call(operation.prepare, host, args)
        try:
            return await self._decide_and_run(operation, args, prepared)
        finally:
            close = getattr(prepared.context, "close", None)
            if close is not None:
                close()  # what prepare took (e.g. a sealed layer copy), allowed or not

    async def _decide_and_run(
        self, operation: Operation, args: dict[str, Any], prepared: Prepared
    ) -> Any:
        host = self.agent
        assert operation.point is not None
        if not operation.mutating:
            decision = host.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            call = Call(args, prepared.facts, prepared.context, decision)
            return await _call(operation.effect, host, call)
        agent = cast(StatefulHost, host)
        if operation.point not in MUTATING_POINTS:
            # Ruled on, not recorded: nothing to serialise against.
            agent.check_not_tainted()
            decision = agent.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            call = Call(args, prepared.facts, prepared.context, decision)
            return await _effect(operation, agent, call)
        if operation.reserves:
            return await self._reserve_and_run(operation, agent, args, prepared)
        async with agent.mutation_lock:
            agent.check_not_tainted()
            decision = agent.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            call = Call(args, prepared.facts, prepared.context, decision)
            result = await _effect(operation, agent, call)
            agent.gate.commit(decision)
            return result

    async def _reserve_and_run(
        self, operation: Operation, agent: StatefulHost, args: dict[str, Any], prepared: Prepared
    ) -> Any:
        """Decide and commit under the lock, run the effect outside it, revert on failure."""
        assert operation.point is not None
        async with agent.mutation_lock:  # held by nobody across an external process
            agent.check_not_tainted()
            gate = agent.gate
            decision = agent.decide(operation.point, prepared.facts, args)
            decision.raise_if_denied()
            gate.commit(decision)
        call = Call(args, prepared.facts, prepared.context, decision)
        try:
            return await _effect(operation, agent, call)
        except BaseException:
            # Under the lock, so that no decision made against the state waits for its commit
            # meanwhile; shielded, so that a second cancellation cannot skip the revert.
            await asyncio.shield(_revert(agent, gate, decision))
            raise


async def _revert(agent: StatefulHost, gate: Gate, decision: Decision) -> None:
    async with agent.mutation_lock:
        gate.revert(decision)  # only entries of this request's resources, which it still holds


def _log_request(operation: Operation, args: dict[str, Any]) -> None:
    """One debug line per request: the operation, its container and which arguments came
    (not their values: a spec's env may hold secrets)."""
    extra = {"op": operation.name, "point": operation.point, "args": sorted(args)}
    if isinstance(args.get("container_id"), str):
        extra["container_id"] = args["container_id"]
    log.debug("request", extra=extra)


async def _effect(operation: Operation, agent: StatefulHost, call: Call) -> Any:
    try:
        return await _call(operation.effect, agent, call)
    except TaintedError as exc:
        # An undo failed: the guest may no longer match the policy state.
        agent.taint(f"{operation.name}: {exc.message}")
        raise


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
