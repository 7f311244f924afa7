"""Wrap a policy into a Confidential Containers initdata TOML (what `measure` reads back).

The policy's bytes go under [data] "policy.json" unchanged: as a TOML multi-line literal
string where they allow it (readable, no escapes), else as a basic string with escapes. The
result is checked by reading it back: the policy inside is byte for byte the one given.
"""

from __future__ import annotations

import json
import re

from guestagent.policy.measure import (
    INITDATA_ALGORITHMS,
    INITDATA_POLICY_KEY,
    INITDATA_VERSION,
    MeasurementError,
    measure,
)

__all__ = ["wrap_initdata"]

# Controls a multi-line literal string may not hold (TOML allows tab and newline).
_LITERAL_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|'''|\r")


def _toml_string(text: str) -> str:
    if not _LITERAL_FORBIDDEN.search(text) and not text.startswith("\n") and not text.endswith("'"):
        return f"'''\n{text}'''"
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped.
    return json.dumps(text).replace("\x7f", "\\u007f")


def wrap_initdata(policy: bytes, algorithm: str = "sha384") -> bytes:
    if algorithm not in INITDATA_ALGORITHMS:
        raise MeasurementError(f"unknown initdata algorithm {algorithm!r}")
    try:
        text = policy.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MeasurementError(f"the policy is not UTF-8 (byte {exc.start})") from None
    document = (
        f'version = "{INITDATA_VERSION}"\n'
        f'algorithm = "{algorithm}"\n\n'
        "[data]\n"
        f'"{INITDATA_POLICY_KEY}" = {_toml_string(text)}\n'
    ).encode()
    if measure(document).policy_bytes != policy:
        raise MeasurementError("the policy does not survive wrapping into TOML")
    return document
