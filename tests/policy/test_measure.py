"""Measurement over the exact bytes, initdata digests, and adoption against HOST_DATA."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from guestagent.errors import ErrorCode
from guestagent.policy.measure import MeasurementError, adopt, measure

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
POLICY = json.dumps(
    {"version": 1, "containers": [{"name": "a", "layers": ["ab" * 32], "command": ["/bin/true"]}]}
).encode()


def _initdata(algorithm: str = "sha256", version: str = "0.1.0", policy: bytes = POLICY) -> bytes:
    return (
        f'version = "{version}"\nalgorithm = "{algorithm}"\n\n[data]\n'
        f"\"aa.toml\" = \"x = 1\"\n\"policy.json\" = '''\n{policy.decode()}\n'''\n"
    ).encode()


def test_json_digest_is_sha256_of_the_exact_bytes() -> None:
    m = measure(POLICY)
    assert (m.format, m.algorithm) == ("json", "sha256")
    assert m.host_data == hashlib.sha256(POLICY).digest()
    assert measure(POLICY + b"\n").host_data != m.host_data  # no canonicalisation


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_initdata_digest_is_raw_toml_bytes_cut_to_32(algorithm: str) -> None:
    raw = _initdata(algorithm)
    m = measure(raw)
    full = hashlib.new(algorithm, raw).digest()
    assert m.format == "initdata" and m.digest == full
    assert m.host_data == full[:32] and len(m.host_data) == 32
    assert m.policy_bytes.strip() == POLICY


def test_initdata_example_wraps_the_busybox_policy() -> None:
    raw = (EXAMPLES / "initdata.toml").read_bytes()
    m = measure(raw)
    assert m.host_data == hashlib.sha384(raw).digest()[:32]
    assert m.policy_bytes == (EXAMPLES / "busybox.json").read_bytes()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_initdata("md5"), "unknown algorithm 'md5'"),
        (_initdata("sha-256"), "unknown algorithm"),
        (_initdata(version="0.2.0"), "version must be '0.1.0'"),
        (b'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "x"\n', "policy.json"),
        (b'version = "0.1.0"\nalgorithm = "sha256"\nextra = 1\n[data]\n', "unknown top-level"),
        (b"not toml = = =", "neither a JSON policy nor initdata"),
    ],
)
def test_bad_initdata(raw: bytes, message: str) -> None:
    with pytest.raises(MeasurementError, match=message):
        measure(raw)


def test_adopt_accepts_only_on_equality() -> None:
    result = adopt(POLICY, hashlib.sha256(POLICY).digest())
    assert result.accepted and result.policy is not None
    assert result.policy.containers[0].name == "a"


def test_adopt_mismatch_explains_both_values() -> None:
    host_data = bytes(range(32))
    result = adopt(POLICY, host_data)
    assert not result.accepted and result.policy is None
    assert result.code is ErrorCode.POLICY_MISMATCH
    assert host_data.hex() in result.reason
    assert hashlib.sha256(POLICY).hexdigest() in result.reason


def test_adopt_initdata_sha512_truncated() -> None:
    raw = _initdata("sha512")
    assert adopt(raw, hashlib.sha512(raw).digest()[:32]).accepted
    assert not adopt(raw, hashlib.sha256(raw).digest()).accepted


def test_adopt_refuses_bad_host_data_length_and_invalid_measured_policy() -> None:
    assert adopt(POLICY, b"\0" * 31).code is ErrorCode.POLICY_MISMATCH
    bad = b'{"version": 1, "containers": [], "oops": true}'
    result = adopt(bad, hashlib.sha256(bad).digest())
    assert not result.accepted and result.code is ErrorCode.POLICY_INVALID
    assert "$.oops" in result.reason
    unknown = _initdata("md5")
    assert adopt(unknown, b"\0" * 32).code is ErrorCode.POLICY_INVALID
