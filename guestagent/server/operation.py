"""Moved to `guestagent.rpc.operation` (shared with the console); kept for existing imports."""

from guestagent.rpc.operation import Call, Effect, Operation, Prepare, Prepared

__all__ = ["Call", "Effect", "Operation", "Prepare", "Prepared"]
