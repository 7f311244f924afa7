"""Typed methods per operation, shared by both clients: each builds (op, args) and the
flavour decides how to send it. `_call` returns the result or an awaitable of it."""

from __future__ import annotations

from typing import Any

__all__ = ["AgentMethods"]


class AgentMethods:
    def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def hello(self, client: str = "guestagent.client") -> Any:
        return self._call("hello", {"protocol": 1, "client": client})

    def ping(self, payload: bytes = b"") -> Any:
        return self._call("ping", {"payload": payload})

    def status(self) -> Any:
        return self._call("status")
