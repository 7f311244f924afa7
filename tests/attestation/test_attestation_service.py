"""The attestation socket in-process: reports verify end to end, keys follow the documented
construction and bind policy, entry, purpose and fields; bad requests get reasons."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat

import pytest
from attestation_helpers import (
    adopted_policy,
    ask,
    attester_entry,
    expected_key,
    launch,
    policy_bytes,
    short_dir,
    verify_as_relying_party,
)

from guestagent.attestation import AttestationHub, AttestationServer, attestation_entry
from guestagent.attestation.protocol import MAX_LINE
from guestagent.errors import AlreadyExistsError, PolicyDenied
from guestagent.snp.backend import GuestField

KEY_REQUEST = {"op": "derived_key", "purpose": "sealing", "fields": ["measurement", "policy"]}


@pytest.fixture
def sock_dir():
    directory = short_dir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def serve_once(backend, entry, path, *requests):
    server = AttestationServer(backend, entry, path)
    await server.start()
    try:
        return await ask(path, *requests)
    finally:
        await server.stop()


def test_report_verifies_with_the_sim_root_and_carries_our_data(chip, sock_dir):
    policy = policy_bytes()
    backend = launch(chip, policy)
    data = hashlib.sha512(b"workload public key").digest()
    (reply,) = asyncio.run(
        serve_once(
            backend, "attester", sock_dir / "a.sock", {"op": "report", "report_data": data.hex()}
        )
    )
    assert reply["simulated"] is True
    host_data = adopted_policy(backend, policy).measurement.host_data
    report = verify_as_relying_party(reply, data, host_data, backend.state.ark)
    assert report.report_data == data and report.host_data == host_data


def test_derived_key_is_the_documented_construction(chip, sock_dir):
    backend = launch(chip, policy_bytes())
    requests = [
        KEY_REQUEST,
        {**KEY_REQUEST, "fields": ["policy", "measurement", "policy"]},  # same set, same key
        {"op": "derived_key", "purpose": "sealing"},  # default fields: measurement + policy
        {**KEY_REQUEST, "fields": ["measurement"]},
        {**KEY_REQUEST, "purpose": "signing"},
    ]
    replies = asyncio.run(serve_once(backend, "attester", sock_dir / "a.sock", *requests))
    keys = [bytes.fromhex(r["key"]) for r in replies]
    both = GuestField.MEASUREMENT | GuestField.POLICY
    assert keys[0] == keys[1] == keys[2] == expected_key(backend, "attester", "sealing", both)
    assert keys[3] == expected_key(backend, "attester", "sealing", GuestField.MEASUREMENT)
    assert keys[4] == expected_key(backend, "attester", "signing", both)
    assert len(set(keys[2:])) == 3


def test_keys_bind_policy_and_entry_and_survive_restarts(chip, sock_dir):
    policy_a, policy_b = policy_bytes(), policy_bytes(note="another policy")
    assert policy_a != policy_b

    def key(policy: bytes, entry: str = "attester") -> str:
        backend = launch(chip, policy)  # a fresh backend and server: an agent restart
        (reply,) = asyncio.run(serve_once(backend, entry, sock_dir / "k.sock", KEY_REQUEST))
        return reply["key"]

    first = key(policy_a)
    assert key(policy_a) == first  # same policy, restarted agent: same key
    assert key(policy_b) != first  # another policy: another key
    assert key(policy_a, "other-entry") != first  # another entry of the same policy


def test_several_requests_on_one_connection(chip, sock_dir):
    backend = launch(chip, policy_bytes())
    replies = asyncio.run(
        serve_once(
            backend,
            "attester",
            sock_dir / "a.sock",
            {"op": "report", "report_data": "00" * 64},
            KEY_REQUEST,
            {"op": "report", "report_data": "11" * 64},
        )
    )
    assert ["report" in replies[0], "key" in replies[1], "report" in replies[2]] == [True] * 3


@pytest.mark.parametrize(
    "request_line, code, message",
    [
        (b"not json\n", "protocol.bad_message", "not one JSON object"),
        (b"[1, 2]\n", "protocol.bad_message", "must be a JSON object"),
        (b'{"op": "mount"}\n', "protocol.unknown_op", "unknown op 'mount'"),
        (b'{"op": "report"}\n', "protocol.invalid_argument", "128 hex digits"),
        (b'{"op": "report", "report_data": "zz"}\n', "protocol.invalid_argument", "128 hex"),
        (
            b'{"op": "report", "report_data": "' + b"g" * 128 + b'"}\n',
            "protocol.invalid_argument",
            "128 hex digits",
        ),
        (
            b'{"op": "report", "report_data": "' + b"0" * 128 + b'", "vmpl": 0}\n',
            "protocol.unknown_field",
            "unknown fields for report: ['vmpl']",
        ),
        (b'{"op": "derived_key", "purpose": "a/b"}\n', "protocol.invalid_argument", "without '/'"),
        (b'{"op": "derived_key", "purpose": ""}\n', "protocol.invalid_argument", "1..64"),
        (
            b'{"op": "derived_key", "purpose": "' + b"p" * 65 + b'"}\n',
            "protocol.invalid_argument",
            "1..64",
        ),
        (
            b'{"op": "derived_key", "purpose": "x", "fields": ["policy"]}\n',
            "protocol.invalid_argument",
            "must include measurement",
        ),
        (
            b'{"op": "derived_key", "purpose": "x", "fields": ["measurement", "host_data"]}\n',
            "protocol.invalid_argument",
            "unknown key fields ['host_data']",
        ),
    ],
)
def test_bad_requests_are_answered_with_a_reason(chip, sock_dir, request_line, code, message):
    backend = launch(chip, policy_bytes())
    replies = asyncio.run(
        serve_once(backend, "attester", sock_dir / "a.sock", request_line, KEY_REQUEST)
    )
    assert replies[0]["error"]["code"] == code
    assert message in replies[0]["error"]["message"]
    assert "key" in replies[1]  # the conversation carries on


def test_oversized_line_is_refused_and_the_connection_closed(chip, sock_dir):
    backend = launch(chip, policy_bytes())
    line = b'{"op": "report", "pad": "' + b"x" * MAX_LINE + b'"}\n'
    replies = asyncio.run(serve_once(backend, "attester", sock_dir / "a.sock", line, KEY_REQUEST))
    assert replies[0]["error"]["message"] == f"request longer than {MAX_LINE} bytes"
    assert replies[1] == {"closed": True}


def test_snp_failures_are_replies(chip, sock_dir):
    backend = launch(chip, policy_bytes())
    request = {**KEY_REQUEST, "fields": ["measurement", "guest_svn", "tcb_version"]}
    (reply,) = asyncio.run(serve_once(backend, "attester", sock_dir / "a.sock", request))
    assert "key" in reply  # the guest's own SVN and TCB (from the report) are accepted
    backend.config = type(backend.config)(host_data=bytes(32), guest_vmpl=1)  # VMPL 0 refused
    (reply,) = asyncio.run(serve_once(backend, "attester", sock_dir / "b.sock", KEY_REQUEST))
    assert reply["error"]["code"] == "snp.firmware_error"
    assert "VMPL" in reply["error"]["message"]


def test_hub_gives_each_container_its_own_socket_and_mount(chip, sock_dir):
    backend = launch(chip, policy_bytes())

    async def scenario():
        hub = AttestationHub(backend, sock_dir)
        mount = await hub.open("c1", "attester")
        path = hub.socket_path("c1")
        assert mount == {
            "destination": "/run/guestagent/attestation.sock",
            "type": "bind",
            "source": str(path),
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        }
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o666
        await hub.open("c2", "other")
        with pytest.raises(AlreadyExistsError):
            await hub.open("c1", "attester")
        k1 = (await ask(path, KEY_REQUEST))[0]["key"]
        k2 = (await ask(hub.socket_path("c2"), KEY_REQUEST))[0]["key"]
        assert k1 != k2  # bound to their own policy entries
        assert [d["entry"] for d in hub.describe()] == ["attester", "other"]
        await hub.close("c1")
        assert not path.parent.exists()
        await hub.close_all()
        assert list((sock_dir / "attestation").iterdir()) == []

    asyncio.run(scenario())


def test_attestation_entry_from_create_decision_data():
    assert attestation_entry({"attestation_socket": False, "candidates": ["a"]}) is None
    assert attestation_entry({"attestation_socket": True, "candidates": ["a"]}) == "a"
    with pytest.raises(PolicyDenied, match="exactly one matching policy entry"):
        attestation_entry({"attestation_socket": True, "candidates": ["a", "b"]})
    with pytest.raises(PolicyDenied):
        attestation_entry({"attestation_socket": True})


def test_socket_path_must_fit_sockaddr(chip, tmp_path):
    with pytest.raises(Exception, match="longer than 107 bytes"):
        AttestationServer(launch(chip, policy_bytes()), "a", tmp_path / ("x" * 120))


def test_entry_name_in_policy_is_used_verbatim(chip, sock_dir):
    policy = policy_bytes(attester_entry("team/app"))
    backend = launch(chip, policy)
    (reply,) = asyncio.run(serve_once(backend, "team/app", sock_dir / "a.sock", KEY_REQUEST))
    both = GuestField.MEASUREMENT | GuestField.POLICY
    assert bytes.fromhex(reply["key"]) == expected_key(backend, "team/app", "sealing", both)
