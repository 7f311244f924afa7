"""Request traces from a live agent, in the form `guestagent policy check --trace` replays.

One JSON line per policy decision: the enforcement point, the request, and the decision the
agent made (`{"allowed", "rule"}`). Container requests are recorded at the OCI level, as the
host sent them: `create_container` as `{"oci": {"container_id", "spec", "rootfs"}}` (rootfs:
the overlay the agent assembled) and `exec_in_container` as `{"oci": {"container_id",
"process"}}`; replay turns them into the engine's input with the agent's own spec reader.
Every other point records its input (`{"input": ...}`), which is what the host sent plus the
facts the agent measured (a layer's root hash). Bytes are written as `{"$bytes": base64}`.

A trace holds what the host sent, secrets in env values included: it is written only where
the operator asked for it (`serve --trace FILE`, or the console's `trace` command where the
policy allows it).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError

__all__ = ["RequestTrace", "load_trace", "trace_entry"]

MAX_TRACE_LINES = 100_000
MAX_MEMORY_LINES = 10_000


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def trace_entry(
    point: str, facts: Mapping[str, Any], args: Mapping[str, Any] | None, decision: Any
) -> dict[str, Any]:
    """The trace line for one decision (`args`: the operation's arguments, when known)."""
    entry: dict[str, Any] = {"point": point}
    if args is not None and point == "create_container" and "spec" in args:
        entry["oci"] = {
            "container_id": args["container_id"],
            "spec": args["spec"],
            "rootfs": facts.get("rootfs"),
        }
    elif args is not None and point == "exec_in_container" and "process" in args:
        entry["oci"] = {"container_id": args["container_id"], "process": args["process"]}
    else:
        entry["input"] = facts
    entry["decision"] = {"allowed": decision.allowed, "rule": decision.rule}
    return _plain(entry)


class RequestTrace:
    """Writes trace lines to a file (`serve --trace`) and, while the console asks, to memory."""

    def __init__(self, path: str | None = None) -> None:
        self._file: TextIO | None = None
        self.path = path
        self._memory: list[str] | None = None
        self.lines = 0
        if path is not None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise AgentError(
                    f"cannot write --trace {path}: {exc.strerror}", code=ErrorCode.INVALID_ARGUMENT
                ) from None
            self._file = os.fdopen(fd, "w", encoding="utf-8")

    @property
    def active(self) -> bool:
        return self._file is not None or self._memory is not None

    def record(
        self, point: str, facts: Mapping[str, Any], args: Mapping[str, Any] | None, decision: Any
    ) -> None:
        if self.lines >= MAX_TRACE_LINES:
            return
        line = json.dumps(trace_entry(point, facts, args, decision), sort_keys=True)
        self.lines += 1
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()  # a trace is read while the agent runs, and after a crash
        if self._memory is not None and len(self._memory) < MAX_MEMORY_LINES:
            self._memory.append(line)

    @property
    def recording_to_memory(self) -> bool:
        return self._memory is not None

    def start_memory(self) -> None:
        self._memory = []

    def memory(self) -> list[str]:
        return list(self._memory or [])

    def stop_memory(self) -> list[str]:
        lines, self._memory = self._memory or [], None
        return lines

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _oci_input(point: str, oci: Any, where: str) -> dict[str, Any]:
    from guestagent.containers.exec_spec import exec_input  # the spec readers: only to replay
    from guestagent.containers.spec import enforcement_input

    converters: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "create_container": lambda o: enforcement_input(o["container_id"], o["spec"], o["rootfs"]),
        "exec_in_container": lambda o: exec_input(o["container_id"], o["process"]),
    }
    if point not in converters or not isinstance(oci, dict):
        raise InvalidArgumentError(f"{where}: an `oci` request is only for create/exec")
    try:
        return converters[point](oci)
    except KeyError as exc:
        raise InvalidArgumentError(f"{where}: oci request lacks {exc.args[0]!r}") from None
    except AgentError as exc:
        raise InvalidArgumentError(f"{where}: {exc.message}") from None


def load_trace(text: str) -> list[tuple[str, Any, dict[str, Any] | None]]:
    """(point, engine input, recorded decision or None) per line; both forms are read:
    `{"point", "input"}` and `{"point", "oci"}`, each with an optional `decision`."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"trace line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{where}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict) or not isinstance(item.get("point"), str):
            raise InvalidArgumentError(f"{where}: expected {{point, input or oci}}")
        keys = set(item) - {"point", "decision"}
        if keys not in ({"input"}, {"oci"}):
            raise InvalidArgumentError(f"{where}: expected {{point, input or oci[, decision]}}")
        item = _unplain(item)
        point = item["point"]
        request = item["input"] if "input" in item else _oci_input(point, item["oci"], where)
        recorded = item.get("decision")
        if recorded is not None and not (
            isinstance(recorded, dict) and isinstance(recorded.get("allowed"), bool)
        ):
            raise InvalidArgumentError(f"{where}: decision must be {{allowed, rule}}")
        entries.append((point, request, recorded))
        if len(entries) > MAX_TRACE_LINES:
            raise InvalidArgumentError(f"trace longer than {MAX_TRACE_LINES} entries")
    return entries
