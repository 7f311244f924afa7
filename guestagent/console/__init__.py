"""The debug console: read-only inspection of a running agent, on a listener of its own.

It speaks the agent protocol (same frames, hello, request/reply maps) but its operation
table holds only the inspection commands in `commands.COMMANDS`, each gated by the policy at
`console_<command>` (the policy's `debug_console` section). It reads the agent through the
narrow `AgentView` protocol and has no path to anything that mounts, executes, signals or
writes::

    console = ConsoleServer(agent, ["unix:///run/guestagent-console.sock"])
    await console.start()
    ...
    await console.stop()

`guestagent console --connect URI` is the client (guestagent/cli/console.py).
"""

from __future__ import annotations

from guestagent.console.commands import COMMANDS, console_operations
from guestagent.console.server import ConsoleServer
from guestagent.console.view import AgentView

__all__ = ["COMMANDS", "AgentView", "ConsoleServer", "console_operations"]
