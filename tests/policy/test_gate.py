"""PolicyGate: commits only fresh decisions, logs every decision, records replayable traces."""

from __future__ import annotations

import pytest

from guestagent.errors import InvalidStateError
from guestagent.policy.engine import decide
from guestagent.policy.gate import PolicyGate
from guestagent.policy.log import DecisionLog
from guestagent.policy.trace import parse_trace, replay
from tests.policy import world


def _gate(**kwargs: object) -> PolicyGate:
    return PolicyGate(world.load_policy("main"), digest="ab" * 32, **kwargs)


def test_commit_adopts_the_next_state() -> None:
    gate = _gate()
    decision = gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L1})
    assert decision.allowed and not gate.state.devices
    gate.commit(decision)
    assert gate.state.devices == {"/l/0": world.L1}


def test_stale_decision_is_refused() -> None:
    gate = _gate()
    first = gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L1})
    second = gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L2})
    gate.commit(first)
    with pytest.raises(InvalidStateError, match="stale decision"):
        gate.commit(second)
    assert gate.state.devices == {"/l/0": world.L1}


def test_denied_and_foreign_decisions_cannot_be_committed() -> None:
    gate = _gate()
    denied = gate.decide("mount_device", {"target": "/l/0", "device_hash": "00" * 32})
    with pytest.raises(InvalidStateError, match="denied"):
        gate.commit(denied)
    other = _gate()
    foreign = other.decide("mount_device", {"target": "/l/0", "device_hash": world.L1})
    with pytest.raises(InvalidStateError, match="stale"):
        gate.commit(foreign)


def test_read_only_decisions_commit_as_no_ops() -> None:
    gate = _gate()
    read = gate.decide("get_properties", {})
    gate.commit(gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L1}))
    gate.commit(read)  # nothing to adopt, so not stale
    assert len(gate.state.devices) == 1


COPY_PASSWD = {"destination": "/etc/passwd", "mode": 0, "dir_mode": 0o755, "size": 0,
               "kind": "file", "target": "", "uid": 0, "gid": 0}  # fmt: skip


def test_decision_log_is_bounded_and_filterable() -> None:
    times = iter(range(100))
    sink: list[dict] = []
    gate = _gate(log_capacity=3, clock=lambda: float(next(times)), log_sink=sink.append)
    gate.decide("get_properties", {})
    for _ in range(3):
        gate.decide("copy_file", COPY_PASSWD)
    assert len(gate.log) == 3
    assert gate.log.counters()["allowed"] == 1 and gate.log.counters()["denied"] == 3
    assert [e["rule"] for e in gate.log.entries(allowed=False)] == ["copy_file.destination"] * 3
    assert gate.log.entries(allowed=True) == []  # evicted, still counted
    assert gate.log.entries()[-1]["at"] == 3.0 and len(sink) == 4
    assert gate.describe()["decisions"]["points"]["copy_file"] == {"allowed": 0, "denied": 3}


def test_log_sink_is_silent_without_runtime_logging() -> None:
    sink: list[dict] = []
    gate = PolicyGate(world.load_policy("locked"), log_sink=sink.append)
    gate.decide("get_properties", {})
    assert sink == [] and len(gate.log) == 1


def test_log_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError):
        DecisionLog(0)


def test_trace_roundtrip_replays_to_the_same_decisions() -> None:
    gate = _gate()
    gate.start_trace()
    for point, request in world.SCENARIOS["exec"]:
        gate.commit(gate.decide(point, request))
    gate.decide("exec_in_container", {**world.TEMPLATES["exec_web"], "argv": ["/bin/sh"]})
    trace = gate.stop_trace()
    assert trace is not None and gate.trace is None
    decisions = replay(gate.policy, parse_trace(trace.to_jsonl()))
    assert [d.allowed for d in decisions] == [True] * len(world.SCENARIOS["exec"]) + [False]
    assert decisions[-1].rule == "exec_in_container.argv"


def test_describe_reports_digest_and_state() -> None:
    gate = _gate()
    gate.commit(gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L1}))
    info = gate.describe()
    assert info["state"] == "enforcing" and info["digest"] == "ab" * 32
    assert info["engine_state"]["devices"] == 1


def test_engine_fails_closed_on_garbage() -> None:
    policy = world.load_policy("main")
    state = world.build_state(policy, "empty")
    for point, request in [
        ("no_such_point", {}),
        ("mount_device", None),
        ("create_container", {"container_id": ["x"]}),
        ("mount_overlay", {"container_id": "c", "layer_paths": "/x", "target": "/t"}),
    ]:
        decision = decide(policy, state, point, request)
        assert not decision.allowed and decision.next_state is None
    assert decide(policy, state, "mount_device", None).code.value == "protocol.invalid_argument"


def test_revert_undoes_a_reservation_and_keeps_later_commits() -> None:
    gate = _gate()
    reserved = gate.decide("mount_device", {"target": "/l/0", "device_hash": world.L1})
    gate.commit(reserved)  # committed before its effect ran
    later = gate.decide("mount_device", {"target": "/l/1", "device_hash": world.L2})
    gate.commit(later)
    gate.revert(reserved)  # its effect failed
    assert gate.state.devices == {"/l/1": world.L2}
    gate.revert(gate.decide("get_properties", {}))  # read-only: nothing to undo
    assert gate.state.devices == {"/l/1": world.L2}


def test_state_revert_touches_only_the_entries_the_transition_changed() -> None:
    from guestagent.policy.state import EMPTY_STATE

    base = EMPTY_STATE.evolve(started=EMPTY_STATE.started.add("old"))
    reserved = base.evolve(
        created=base.created.add("c1"),
        candidates=base.candidates.set("c1", (0, 2)),
        started=base.started.discard("old"),
    )
    now = reserved.evolve(created=reserved.created.add("c2"))
    undone = now.revert(base, reserved)
    assert set(undone.created) == {"c2"}
    assert dict(undone.candidates) == {}
    assert set(undone.started) == {"old"}
    assert now.revert(base, base) is now
