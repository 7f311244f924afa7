"""The pure supervision state machine: every transition, with fake pids and wait statuses."""

from __future__ import annotations

import signal

from guestagent.init.supervisor import (
    AgentStarted,
    ChildExited,
    ForwardSignal,
    Phase,
    PowerOff,
    SignalReceived,
    StopTimedOut,
    SupervisorState,
    describe_status,
    step,
)

AGENT = 42
EXIT_3 = 3 << 8  # wait status of exit(3)
KILLED_BY_TERM = signal.SIGTERM  # wait status of death by SIGTERM


def running() -> SupervisorState:
    state, actions = step(SupervisorState(), AgentStarted(AGENT))
    assert actions == [] and state.phase is Phase.RUNNING and state.agent_pid == AGENT
    return state


def test_describe_status() -> None:
    assert describe_status(EXIT_3) == "exit status 3"
    assert describe_status(0) == "exit status 0"
    assert describe_status(KILLED_BY_TERM) == "killed by signal SIGTERM"


def test_agent_exit_powers_off_even_when_it_succeeds() -> None:
    for status, text in ((EXIT_3, "exit status 3"), (0, "exit status 0")):
        state, actions = step(running(), ChildExited(AGENT, status))
        assert state.phase is Phase.DONE and state.agent_status == status
        assert actions == [PowerOff(f"agent (pid {AGENT}) ended unexpectedly: {text}")]


def test_orphans_are_recorded_and_change_nothing_else() -> None:
    state, actions = step(running(), ChildExited(7, 0))
    state, more = step(state, ChildExited(8, EXIT_3))
    assert actions == more == []
    assert state.phase is Phase.RUNNING and state.reaped == (7, 8)


def test_stop_signals_are_forwarded_then_exit_powers_off() -> None:
    state, actions = step(running(), SignalReceived(signal.SIGTERM))
    assert state.phase is Phase.STOPPING
    assert actions == [ForwardSignal(AGENT, signal.SIGTERM)]
    state, actions = step(state, SignalReceived(signal.SIGINT))
    assert actions == [ForwardSignal(AGENT, signal.SIGINT)]
    state, actions = step(state, ChildExited(AGENT, KILLED_BY_TERM))
    assert state.phase is Phase.DONE
    assert actions == [
        PowerOff(f"agent (pid {AGENT}) ended after a stop signal: killed by signal SIGTERM")
    ]


def test_stop_timeout_escalates_to_sigkill() -> None:
    state, _ = step(running(), SignalReceived(signal.SIGTERM))
    state, actions = step(state, StopTimedOut())
    assert state.phase is Phase.STOPPING
    assert actions == [ForwardSignal(AGENT, signal.SIGKILL)]


def test_timeout_while_running_does_nothing() -> None:
    state = running()
    assert step(state, StopTimedOut()) == (state, [])


def test_signal_before_the_agent_started_powers_off() -> None:
    state, actions = step(SupervisorState(), SignalReceived(signal.SIGTERM))
    assert state.phase is Phase.DONE
    assert actions == [PowerOff("SIGTERM before the agent ran")]


def test_after_power_off_only_orphans_are_reaped() -> None:
    state, _ = step(running(), ChildExited(AGENT, 0))
    for event in (SignalReceived(signal.SIGTERM), StopTimedOut(), AgentStarted(9)):
        assert step(state, event) == (state, [])
    state, actions = step(state, ChildExited(AGENT + 1, 0))
    assert actions == [] and state.reaped == (AGENT + 1,)


def test_agent_environment_drops_only_watchdog_pid() -> None:
    from guestagent.init.supervisor import agent_environment

    environ = {"WATCHDOG_PID": "1", "WATCHDOG_USEC": "60000000", "NOTIFY_SOCKET": "/run/n"}
    assert agent_environment(environ) == {"WATCHDOG_USEC": "60000000", "NOTIFY_SOCKET": "/run/n"}
