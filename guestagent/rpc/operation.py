"""What an operation is: its name, its argument schema, where the policy rules on it, and
the effect that runs once the policy has allowed it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from guestagent.policy.decision import Decision
from guestagent.protocol.schema import Schema
from guestagent.records import field, record

__all__ = ["Call", "Effect", "Keys", "Operation", "Prepare", "Prepared"]


@record
class Call:
    """One request on its way through the pipeline.

    `args` are the validated arguments; `facts` the enforcement input that `prepare` measured
    (the arguments themselves when there is no prepare step); `context` what prepare found
    that the effect needs too (so nothing is measured twice); `decision` the policy's ruling
    (None for ungated operations).
    """

    args: dict[str, Any]
    facts: dict[str, Any]
    context: Any = None
    decision: Decision | None = None


@record
class Prepared:
    """What a prepare step returns: the enforcement input and private context for the effect."""

    facts: dict[str, Any]
    context: Any = None


# effect(host, call) -> result; a plain function or a coroutine function. The host is the
# service the operation belongs to (the agent, or the console), typed by each table.
Effect = Callable[[Any, Call], Any]
# prepare(host, args) -> Prepared; gathers facts with read-only I/O.
Prepare = Callable[[Any, dict[str, Any]], Any]
# keys(args) -> the resources (e.g. "container:c1") a request is about; see rpc/resources.py.
Keys = Callable[[dict[str, Any]], Iterable[str]]


@record
class Operation:
    """One wire operation.

    `point` is the policy enforcement point that must allow the request; None marks the few
    operations that are never gated (ping, status: they reveal nothing the policy guards and
    change nothing). `prepare` turns the validated arguments into the enforcement input (by
    default the arguments themselves). `mutating` operations change the guest: they run to
    completion even when their connection goes away. `keys` names the resources a request
    is about: requests about the same ones run one after another, from prepare to the end
    of the effect. Operations whose point changes the policy state decide against the state
    the previous decision committed (see `dispatch`): `reserves` ones commit their decision
    (the reservation) under the mutation lock, run the effect without it and revert the
    reservation if the effect fails, so a slow external process (runtime, veritysetup, mkfs)
    holds no global lock. That is only sound when every policy-state entry the decision
    changes belongs to its `keys`, which a `reserves` operation must therefore have.
    """

    name: str
    effect: Effect
    args: Schema = field(default_factory=dict)
    point: str | None = None
    prepare: Prepare | None = None
    mutating: bool = False
    reserves: bool = False
    keys: Keys | None = None
    summary: str = ""
    runs_inline: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.reserves and self.keys is None:
            raise ValueError(f"operation {self.name!r} reserves without naming its resources")
        # Ungated, synchronous operations answer without a task (the hot path: ping).
        # Worked out once here: inspect costs a microsecond per request.
        inline = (
            self.point is None
            and self.prepare is None
            and not inspect.iscoroutinefunction(self.effect)
        )
        object.__setattr__(self, "runs_inline", inline)
