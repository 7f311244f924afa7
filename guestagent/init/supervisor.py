"""Supervise the agent: reap every child, forward stop signals, power off when the agent dies.

`step` is the pure state machine (event in, actions out). `supervise` is its I/O loop: it makes
the process a child subreaper, blocks the signals it handles and waits for them with
sigtimedwait, so no signal is lost between checks. The power-off action is injected: PID 1
passes the real one (sync + reboot(2)); tests pass a recorder. An agent command that is this
interpreter running this package runs in a fork (no second interpreter start); any other is
posix_spawn'ed.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Callable
from enum import Enum

from guestagent import timeline
from guestagent.init import syscalls
from guestagent.records import field, record, replace

__all__ = [
    "AgentStarted",
    "ChildExited",
    "ForwardSignal",
    "Phase",
    "PowerOff",
    "SignalReceived",
    "StopTimedOut",
    "SupervisorState",
    "agent_environment",
    "describe_status",
    "in_process_command",
    "step",
    "supervise",
]

FORWARDED = (signal.SIGTERM, signal.SIGINT)
HANDLED = frozenset({signal.SIGCHLD, *FORWARDED})


class Phase(Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"  # a stop signal was forwarded; waiting for the agent to exit
    DONE = "done"  # the agent exited; power-off was requested


@record
class AgentStarted:
    pid: int


@record
class ChildExited:
    pid: int
    status: int  # the raw wait status


@record
class SignalReceived:
    signum: int


@record
class StopTimedOut:
    pass


@record
class ForwardSignal:
    pid: int
    signum: int


@record
class PowerOff:
    reason: str


Event = AgentStarted | ChildExited | SignalReceived | StopTimedOut
Action = ForwardSignal | PowerOff


@record
class SupervisorState:
    phase: Phase = Phase.IDLE
    agent_pid: int = 0
    agent_status: int | None = None
    reaped: tuple[int, ...] = field(default_factory=tuple)  # orphans reaped, not the agent


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def step(state: SupervisorState, event: Event) -> tuple[SupervisorState, list[Action]]:
    """The next state and the actions to run, for one event."""
    match event:
        case AgentStarted(pid) if state.phase is Phase.IDLE:
            return replace(state, phase=Phase.RUNNING, agent_pid=pid), []
        case ChildExited(pid, status) if pid == state.agent_pid and state.phase in (
            Phase.RUNNING,
            Phase.STOPPING,
        ):
            how = "after a stop signal" if state.phase is Phase.STOPPING else "unexpectedly"
            reason = f"agent (pid {pid}) ended {how}: {describe_status(status)}"
            done = replace(state, phase=Phase.DONE, agent_status=status)
            return done, [PowerOff(reason)]
        case ChildExited(pid, _):
            return replace(state, reaped=(*state.reaped, pid)), []
        case SignalReceived(signum) if state.phase in (Phase.RUNNING, Phase.STOPPING):
            stopping = replace(state, phase=Phase.STOPPING)
            return stopping, [ForwardSignal(state.agent_pid, signum)]
        case SignalReceived(signum) if state.phase is Phase.IDLE:
            name = signal.Signals(signum).name
            return replace(state, phase=Phase.DONE), [PowerOff(f"{name} before the agent ran")]
        case StopTimedOut() if state.phase is Phase.STOPPING:
            return state, [ForwardSignal(state.agent_pid, signal.SIGKILL)]
    return state, []


def agent_environment(environ: dict[str, str]) -> dict[str, str]:
    """The agent's environment: ours without WATCHDOG_PID. Under systemd that names us (the
    main PID); dropped, the agent sends the WATCHDOG=1 pings itself (NotifyAccess=all)."""
    return {key: value for key, value in environ.items() if key != "WATCHDOG_PID"}


def in_process_command(argv: tuple[str, ...]) -> list[str] | None:
    """The `guestagent` command `argv` runs when it is this interpreter running this package
    (`<sys.executable> -m guestagent COMMAND ...`, what init builds by default), else None."""
    if len(argv) > 3 and argv[0] == sys.executable and argv[1:3] == ("-m", "guestagent"):
        return list(argv[3:])
    return None


def _spawn(argv: tuple[str, ...]) -> int:
    command = in_process_command(argv)
    if command is not None:
        return _fork_command(command)
    # The child must not inherit our blocked signal mask or ignored dispositions.
    return os.posix_spawnp(
        argv[0],
        list(argv),
        agent_environment(dict(os.environ)),
        setsigmask=(),
        setsigdef=tuple(HANDLED),
    )


def _fork_command(command: list[str]) -> int:
    """Run the agent's command in a fork of this interpreter instead of starting a second one:
    in the guest that start, and the imports init already made (argparse, the package's
    own), cost seconds under software emulation. The child gets what a spawned agent
    gets: no blocked signals, default dispositions, our environment without WATCHDOG_PID."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has
        os.environ.pop("WATCHDOG_PID", None)
        timeline.STARTED = timeline.now()  # the agent's own start, for its timeline stamps
        sys.argv = ["guestagent", *command]
        runpy.run_module("guestagent", run_name="__main__")  # what `-m guestagent` runs
        code = 0
    except SystemExit as exc:  # as the interpreter maps it to an exit status
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # never back into init's loop


def _reap() -> list[ChildExited]:
    events: list[ChildExited] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return events
        if pid == 0:
            return events
        events.append(ChildExited(pid, status))


def supervise(
    argv: tuple[str, ...],
    *,
    power_off: Callable[[str], None],
    log: Callable[[str], None] = print,
    stop_grace: float = 10.0,
) -> SupervisorState:
    """Run `argv` and supervise it until it exits, then call `power_off(reason)`.

    Returns the final state if `power_off` returns (only injected test actions do).
    """
    syscalls.set_child_subreaper()
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    state = SupervisorState()
    try:
        pid = _spawn(argv)
    except OSError as exc:
        power_off(f"cannot start the agent {argv[0]!r}: {exc}")
        return replace(state, phase=Phase.DONE)
    how = "in a fork of init" if in_process_command(argv) is not None else "spawned"
    log(f"agent started: pid {pid}: {' '.join(argv)} ({how})")
    state, _ = step(state, AgentStarted(pid))
    while state.phase is not Phase.DONE:
        timeout = stop_grace if state.phase is Phase.STOPPING else 3600.0
        info = signal.sigtimedwait(HANDLED, timeout)
        if info is None:
            events: list[Event] = [StopTimedOut()] if state.phase is Phase.STOPPING else []
        elif info.si_signo == signal.SIGCHLD:
            events = list(_reap())
        else:
            events = [SignalReceived(info.si_signo)]
        for event in events:
            state, actions = step(state, event)
            for action in actions:
                _run(action, power_off, log)
    return state


def _run(action: Action, power_off: Callable[[str], None], log: Callable[[str], None]) -> None:
    if isinstance(action, ForwardSignal):
        log(f"forwarding {signal.Signals(action.signum).name} to the agent (pid {action.pid})")
        with contextlib.suppress(ProcessLookupError):  # gone: its exit arrives as SIGCHLD
            os.kill(action.pid, action.signum)
    else:
        log(f"powering off: {action.reason}")
        power_off(action.reason)
