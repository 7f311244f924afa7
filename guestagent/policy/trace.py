"""Request traces: record (point, input) pairs, write them as JSON lines, replay them offline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from guestagent.errors import InvalidArgumentError
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE, PolicyState

__all__ = ["TraceRecorder", "parse_trace", "replay"]

MAX_TRACE_ENTRIES = 100_000


def _plain(value: Any) -> Any:
    """Inputs as JSON-ready values (tuples to lists, read-only maps to dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class TraceRecorder:
    """Holds the requests the gate saw, bounded, in order."""

    def __init__(self, capacity: int = MAX_TRACE_ENTRIES) -> None:
        self.capacity = capacity
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.dropped = 0

    def record(self, point: str, request: Mapping[str, Any]) -> None:
        if len(self.entries) >= self.capacity:
            self.dropped += 1
            return
        self.entries.append((point, _plain(request)))

    def to_jsonl(self) -> str:
        lines = (json.dumps({"point": p, "input": i}, sort_keys=True) for p, i in self.entries)
        return "".join(line + "\n" for line in lines)


def parse_trace(text: str) -> list[tuple[str, Any]]:
    """Parse JSON lines of {"point", "input"}; blank lines are skipped."""
    trace = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"trace line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict) or set(item) != {"point", "input"}:
            raise InvalidArgumentError(f"trace line {number}: expected {{point, input}}")
        if not isinstance(item["point"], str):
            raise InvalidArgumentError(f"trace line {number}: point must be a string")
        trace.append((item["point"], item["input"]))
        if len(trace) > MAX_TRACE_ENTRIES:
            raise InvalidArgumentError(f"trace longer than {MAX_TRACE_ENTRIES} entries")
    return trace


def replay(
    policy: Policy, trace: Iterable[tuple[str, Any]], state: PolicyState = EMPTY_STATE
) -> list[Decision]:
    """Decide each request in order, committing allows as if every effect succeeded."""
    decisions = []
    for point, request in trace:
        decision = decide(policy, state, point, request)
        if decision.allowed:
            state = decision.next_state.after
        decisions.append(decision)
    return decisions
