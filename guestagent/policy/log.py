"""A bounded in-memory log of decisions, with counters that survive eviction."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from guestagent.policy.decision import Decision

__all__ = ["DecisionLog"]


class DecisionLog:
    """The last `capacity` decisions (summaries, never state) and running totals."""

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0
        self.allowed = 0
        self.denied = 0
        self.by_point: Counter[tuple[str, bool]] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, decision: Decision, at: float | None = None) -> dict[str, Any]:
        self._seq += 1
        entry = {"seq": self._seq, **decision.summary()}
        if at is not None:
            entry["at"] = at
        if not decision.allowed:
            entry["code"] = decision.code.value
            field = decision.details.get("field") if decision.details else None
            if field is not None:
                entry["field"] = field
        self._entries.append(entry)
        if decision.allowed:
            self.allowed += 1
        else:
            self.denied += 1
        self.by_point[(decision.point, decision.allowed)] += 1
        return entry

    def entries(
        self, allowed: bool | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The newest last; `allowed` filters to allows (True) or denials (False)."""
        chosen = [e for e in self._entries if allowed is None or e["allowed"] is allowed]
        return chosen if limit is None else chosen[-limit:] if limit > 0 else []

    def counters(self) -> dict[str, Any]:
        per_point: dict[str, dict[str, int]] = {}
        for (point, ok), count in sorted(self.by_point.items()):
            per_point.setdefault(point, {"allowed": 0, "denied": 0})[
                "allowed" if ok else "denied"
            ] = count
        return {"allowed": self.allowed, "denied": self.denied, "points": per_point}
