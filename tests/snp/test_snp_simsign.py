"""The simulator signing apart: a child's signature verifies like one made in process, the
chip's HKDF equals cryptography's, a child started ahead is used once; it is a fork of a
single-threaded process and a fresh interpreter otherwise, fails with a clear
SnpUnavailableError and never outlives its use. Scenarios that depend on the process's
threads run in a fresh interpreter (sign_scenarios.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guestagent.snp import simsign
from guestagent.snp.amdcerts import load_certificate
from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.sim import SimBackend, SimConfig
from guestagent.snp.simstate import hkdf_sha384
from guestagent.snp.verify import VerifyOptions, verify_report

NONCE = bytes(range(64))


def _verify(backend: SimBackend, raw: bytes, **options):
    """Verified against the simulator's own chain (its ARK trusted)."""
    table = backend.get_certificates()
    chain = [load_certificate(table.ask), load_certificate(table.ark)]
    options = VerifyOptions(trusted_roots=(chain[1],), **options)
    return verify_report(raw, load_certificate(table.vcek), chain, options)


@pytest.mark.parametrize("length", [1, 32, 48, 64, 100])
def test_the_chips_hkdf_equals_cryptographys(length: int) -> None:
    secret, salt, info = os.urandom(32), b"guestagent-snp-sim", b"label:%d" % length
    oracle = HKDF(hashes.SHA384(), length, salt=salt, info=info).derive(secret)
    assert hkdf_sha384(secret, salt=salt, info=info, length=length) == oracle


def test_a_report_signed_in_a_child_verifies_and_matches_the_in_process_one(milan_state):
    host_data = b"\x17" * 32
    apart = SimBackend(milan_state, SimConfig(host_data=host_data), sign_in_child=True)
    here = SimBackend(milan_state, SimConfig(host_data=host_data))
    assert apart.describe()["signs_in"] == "a child process"
    raw = apart.get_report(NONCE)
    result = _verify(apart, raw, expected_host_data=host_data, expected_report_data=NONCE)
    assert result.ok, [c.describe() for c in result.failures]
    # Same chip, same key: the in-process backend's certificate verifies the child's report.
    assert _verify(here, raw, expected_host_data=host_data).ok


def test_a_child_started_ahead_signs_once_then_a_fresh_one_signs(milan_state, monkeypatch):
    backend = SimBackend(milan_state, sign_in_child=True)
    signer = backend.child_signer
    started = []
    real_start = simsign.ChildSigner._start
    monkeypatch.setattr(
        simsign.ChildSigner, "_start", staticmethod(lambda *a: started.append(1) or real_start(*a))
    )
    signer.start_ahead()
    signer.start_ahead()  # one waiting child at most
    assert len(started) == 1
    first = backend.get_report(NONCE)
    assert len(started) == 1  # the waiting child signed
    second = backend.get_report(NONCE)
    assert len(started) == 2
    for raw in (first, second):
        assert _verify(backend, raw, expected_report_data=NONCE).ok


def test_an_interpreter_that_cannot_sign_is_snp_unavailable(milan_state, monkeypatch):
    backend = SimBackend(milan_state, sign_in_child=True)
    monkeypatch.setattr(simsign, "_SCRIPT", os.devnull)  # runs, prints nothing
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)  # a thread: no fork, an interpreter
    worker.start()
    try:
        with pytest.raises(SnpUnavailableError, match="failed to sign"):
            backend.get_report(NONCE)
    finally:
        stop.set()
        worker.join()


SCENARIOS = Path(__file__).with_name("sign_scenarios.py")


def scenario(milan_state: Path, name: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(SCENARIOS), str(milan_state), name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(("name", "started"), [("fork", "fork"), ("threads", "exec")])
def test_the_child_is_a_fork_unless_threads_run_and_its_reports_verify(
    milan_state, name: str, started: str
) -> None:
    seen = scenario(milan_state, name)
    assert seen["started"] == started
    assert seen["children_after"] == []
    assert not seen["cryptography_here"]  # loaded in the child only
    backend = SimBackend(milan_state)
    raw = bytes.fromhex(seen["report"])
    result = _verify(backend, raw, expected_report_data=NONCE)
    assert result.ok, [c.describe() for c in result.failures]


def test_a_forked_child_that_fails_is_a_clear_snp_unavailable_error(milan_state) -> None:
    seen = scenario(milan_state, "failures")
    assert seen["killed"] == ("simulated secure processor failed to sign (exit 137): no output")
    assert seen["invalid_key"].startswith(
        "simulated secure processor failed to sign (exit 1): ValueError: "
    ), seen["invalid_key"]
    assert seen["children_after"] == []


def test_a_child_started_ahead_and_not_used_is_killed_and_reaped(milan_state) -> None:
    assert scenario(milan_state, "discard") == {"alive": False, "children_after": []}


def test_with_the_reaper_a_fork_signs_for_a_worker_thread_never_on_the_loop_thread(
    milan_state,
) -> None:
    seen = scenario(milan_state, "loop_thread")
    assert seen["started"] == "fork"
    assert seen["refused"] == "the simulator signs from a worker thread, not the loop's"
    assert seen["orphans"] == 0  # its status reached its waiter through the reaper
    raw = bytes.fromhex(seen["report"])
    assert _verify(SimBackend(milan_state), raw, expected_report_data=NONCE).ok
