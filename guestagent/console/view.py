"""What the console reads from the agent, and nothing more.

The agent satisfies `AgentView`; the console never holds the agent itself, so the type
checker (and a reviewer) can see every path from a console command into the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from guestagent.containers.manager import ContainerManager
    from guestagent.policy.decision import Decision
    from guestagent.policy.gate import Gate
    from guestagent.snp.backend import SnpBackend

__all__ = ["AgentView", "TraceView"]


class TraceView(Protocol):
    """The agent's request trace as the console's `trace` command drives it."""

    @property
    def recording_to_memory(self) -> bool: ...

    def start_memory(self) -> None: ...

    def memory(self) -> list[str]: ...

    def stop_memory(self) -> list[str]: ...


class AgentView(Protocol):
    """The read-only face of the agent.

    `gate` is the gate in force; when it is a `PolicyGate` the console also reads its
    `policy`, `digest`, `state` (the engine's record of mounts and containers) and `log`
    (the decision log). `snp` is None when no secure processor backend is open; `containers`
    is None before the container manager exists. `storage_view()` lists the mounted layers:
    dicts with `target` and `root_hash` (hex, computed by the agent) and optionally
    `layer_id`, `source` (image or device) and `mode` (the storage registry's
    `LayerRecord.describe()` has exactly these).
    """

    @property
    def gate(self) -> Gate: ...

    @property
    def snp(self) -> SnpBackend | None: ...

    @property
    def containers(self) -> ContainerManager | None: ...

    @property
    def request_trace(self) -> TraceView:
        """The agent's trace of decisions; the console's `trace` command records into it."""
        ...

    def status(self) -> dict[str, Any]:
        """At least `version`, `pid`, `uptime_seconds`, `connections`; `requests` if counted."""
        ...

    def storage_view(self) -> list[dict[str, Any]]: ...

    def decide(self, point: str, facts: Mapping[str, Any]) -> Decision:
        """Ask the gate (and log the decision, like every other decision)."""
        ...
