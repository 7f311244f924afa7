"""Measurement: the digest of the exact bytes delivered, and adoption against HOST_DATA.

A plain JSON policy measures as sha256(bytes). A Confidential Containers initdata TOML
(version "0.1.0", algorithm sha256|sha384|sha512, policy under [data] "policy.json") measures
as algorithm(raw TOML bytes) cut or zero-padded to the 32 bytes of HOST_DATA: what kata and
trustee deploy, not the JCS canonicalisation of the draft spec. Measure first, parse after.
"""

from __future__ import annotations

import hashlib
import hmac

from guestagent.errors import AgentError, ErrorCode
from guestagent.policy._reader import PolicyFormatError
from guestagent.policy.document import MAX_POLICY_BYTES, Policy, parse_policy
from guestagent.records import record

__all__ = [
    "HOST_DATA_LENGTH",
    "INITDATA_ALGORITHMS",
    "INITDATA_POLICY_KEY",
    "AdoptionResult",
    "Measurement",
    "MeasurementError",
    "adopt",
    "measure",
]

HOST_DATA_LENGTH = 32
INITDATA_VERSION = "0.1.0"
INITDATA_POLICY_KEY = "policy.json"
INITDATA_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_INITDATA_FIELDS = frozenset({"version", "algorithm", "data"})


class MeasurementError(AgentError):
    """The delivered bytes are neither a JSON policy nor a well-formed initdata document."""

    code = ErrorCode.POLICY_INVALID


@record
class Measurement:
    """What was delivered, its digest, and the policy bytes inside it."""

    format: str  # "json" or "initdata"
    algorithm: str
    digest: bytes  # the full digest of the delivered bytes
    host_data: bytes  # the digest fitted to HOST_DATA's 32 bytes
    policy_bytes: bytes

    @property
    def host_data_hex(self) -> str:
        return self.host_data.hex()


def _fit(digest: bytes) -> bytes:
    return digest[:HOST_DATA_LENGTH].ljust(HOST_DATA_LENGTH, b"\0")


def _looks_like_json(raw: bytes) -> bool:
    return raw.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{"


def _initdata_policy(raw: bytes) -> tuple[str, bytes]:
    import tomllib  # initdata only: a JSON policy (the common case) never loads it

    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MeasurementError(f"neither a JSON policy nor initdata TOML: {exc}") from None
    unknown = sorted(set(doc) - _INITDATA_FIELDS)
    if unknown:
        raise MeasurementError(f"initdata: unknown top-level fields {unknown}")
    if doc.get("version") != INITDATA_VERSION:
        raise MeasurementError(
            f"initdata: version must be {INITDATA_VERSION!r}, got {doc.get('version')!r}"
        )
    algorithm = doc.get("algorithm")
    if algorithm not in INITDATA_ALGORITHMS:
        raise MeasurementError(
            f"initdata: unknown algorithm {algorithm!r} (expected one of "
            f"{', '.join(INITDATA_ALGORITHMS)})"
        )
    data = doc.get("data")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MeasurementError("initdata: [data] must be a table of strings")
    if INITDATA_POLICY_KEY not in data:
        raise MeasurementError(f"initdata: [data] has no {INITDATA_POLICY_KEY!r}")
    return algorithm, data[INITDATA_POLICY_KEY].encode("utf-8")


def measure(raw: bytes) -> Measurement:
    """Measure the delivered bytes: a JSON policy or an initdata TOML wrapping one."""
    if len(raw) > MAX_POLICY_BYTES * 2:
        raise MeasurementError(f"delivered document larger than {MAX_POLICY_BYTES * 2} bytes")
    if _looks_like_json(raw):
        digest = hashlib.sha256(raw).digest()
        return Measurement("json", "sha256", digest, digest, raw)
    algorithm, policy_bytes = _initdata_policy(raw)
    digest = INITDATA_ALGORITHMS[algorithm](raw).digest()
    return Measurement("initdata", algorithm, digest, _fit(digest), policy_bytes)


@record
class AdoptionResult:
    """Whether the delivered policy may be adopted, and why (both digests on a mismatch)."""

    accepted: bool
    reason: str
    code: ErrorCode | None = None
    measurement: Measurement | None = None
    policy: Policy | None = None
    expected_hex: str = ""  # HOST_DATA from the report
    actual_hex: str = ""  # the digest of what was delivered


def adopt(policy_bytes: bytes, host_data: bytes) -> AdoptionResult:
    """Adopt only if the measurement equals `host_data` (from a fresh report), then parse.

    Pure: the caller fetches the report. Measuring before parsing means an unmeasured
    document is never even interpreted.
    """
    expected = bytes(host_data).hex()
    if len(host_data) != HOST_DATA_LENGTH:
        return AdoptionResult(
            False,
            f"HOST_DATA must be {HOST_DATA_LENGTH} bytes, got {len(host_data)}",
            ErrorCode.POLICY_MISMATCH,
            expected_hex=expected,
        )
    try:
        measurement = measure(policy_bytes)
    except MeasurementError as exc:
        return AdoptionResult(False, exc.message, ErrorCode.POLICY_INVALID, expected_hex=expected)
    actual = measurement.host_data_hex
    if not hmac.compare_digest(measurement.host_data, bytes(host_data)):
        return AdoptionResult(
            False,
            f"policy digest {actual} ({measurement.format}, {measurement.algorithm}) does not "
            f"equal HOST_DATA {expected} from the attestation report",
            ErrorCode.POLICY_MISMATCH,
            measurement,
            expected_hex=expected,
            actual_hex=actual,
        )
    try:
        policy = parse_policy(measurement.policy_bytes)
    except PolicyFormatError as exc:
        return AdoptionResult(
            False,
            f"measured policy is invalid: {exc.message}",
            ErrorCode.POLICY_INVALID,
            measurement,
            expected_hex=expected,
            actual_hex=actual,
        )
    return AdoptionResult(
        True, "policy digest equals HOST_DATA", None, measurement, policy, expected, actual
    )
