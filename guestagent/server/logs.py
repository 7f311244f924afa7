"""Structured logs: one JSON object per line on stderr, which journald and log shippers
take as they are."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "denial_record"]

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _scrub_env(value: Any) -> Any:
    """NAME=VALUE with the value replaced by its length: env values may be secrets."""
    if isinstance(value, str) and "=" in value:
        name, _, secret = value.partition("=")
        return f"{name}=<{len(secret)} characters scrubbed>"
    if isinstance(value, list):
        return [_scrub_env(v) for v in value]
    return value


def _scrub(value: Any, env: bool = False) -> Any:
    """`value` with the `asked` of every env failure in it scrubbed, at any depth."""
    if isinstance(value, Mapping):
        env = env or "env" in str(value.get("field", ""))
        return {
            k: _scrub_env(v) if env and k == "asked" else _scrub(v, env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, env) for v in value]
    return value


def denial_record(decision: Any, facts: Mapping[str, Any]) -> dict[str, Any]:
    """What a denial's warning line says: container, rule, field, what was asked and the
    policy's candidates; an env value the host sent is scrubbed, the policy's rules are not."""
    details = _scrub(dict(decision.details or {}))
    field = str(details.pop("field", ""))
    details.pop("point", None)
    return {
        "container_id": facts.get("container_id"),
        "point": decision.point,
        "rule": decision.rule,
        "field": field,
        "reason": decision.reason,
        "details": details,
    }
