"""Moved to `guestagent.rpc.dispatch` (shared with the console); kept for existing imports."""

from guestagent.rpc.dispatch import Dispatcher, error_to_wire

__all__ = ["Dispatcher", "error_to_wire"]
