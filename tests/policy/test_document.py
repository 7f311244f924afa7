"""Strict parsing: unknown fields, wrong types and unsafe patterns are errors naming the path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from guestagent.errors import ErrorCode
from guestagent.policy.document import PolicyFormatError, parse_policy
from guestagent.policy.patterns import MAX_INPUT_LENGTH, compile_pattern
from tests.policy.world import MAIN_POLICY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def _parse(doc: Any) -> Any:
    return parse_policy(json.dumps(doc).encode())


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MAIN_POLICY)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def test_main_policy_parses_with_indexes() -> None:
    policy = _parse(MAIN_POLICY)
    assert [c.name for c in policy.containers] == ["web", "web-debug", "priv"]
    web = policy.containers[0]
    assert policy.by_layers[web.layers] == (0, 1)
    assert web.env_rules[1].matches("PORT=8080") and not web.env_rules[1].matches("PORT=80x")
    assert web.user.additional_gids == frozenset({10})


@pytest.mark.parametrize("name", ["busybox.json", "multi-container.json"])
def test_examples_parse(name: str) -> None:
    assert parse_policy((EXAMPLES / name).read_bytes()).containers


@pytest.mark.parametrize(
    ("path", "value", "where", "message"),
    [
        (["surprise"], 1, "$.surprise", "unknown field"),
        (["containers", 0, "commandd"], ["x"], "$.containers[0].commandd", "unknown field"),
        (["containers", 0, "user", "name"], "root", "$.containers[0].user.name", "unknown"),
        (
            ["containers", 0, "env_rules", 0, "strategy"],
            "glob",
            "$.containers[0].env_rules[0].strategy",
            "must be string, re2 or regex",
        ),
        (["containers", 0, "layers", 1], "zz", "$.containers[0].layers[1]", "64-digit hex"),
        (["containers", 0, "layers"], [], "$.containers[0].layers", "at least one layer"),
        (["containers", 0, "command"], "sh", "$.containers[0].command", "expected an array"),
        (
            ["containers", 0, "allow_elevated"],
            1,
            "$.containers[0].allow_elevated",
            "expected a boolean",
        ),
        (["containers", 0, "signals"], [True], "$.containers[0].signals[0]", "expected an integer"),
        (["containers", 0, "signals"], [99], "$.containers[0].signals[0]", "outside"),
        (
            ["containers", 0, "capabilities"],
            {"bounding": []},
            "$.containers[0].capabilities.effective",
            "required field is missing",
        ),
        (
            ["containers", 0, "mounts", 0, "source"],
            "(a)\\1",
            "$.containers[0].mounts[0].source",
            "invalid regular expression (RE2): invalid escape sequence",
        ),
        (
            ["containers", 0, "mounts", 0, "source"],
            "[",
            "$.containers[0].mounts[0].source",
            "invalid regular expression",
        ),
        (["containers", 1, "name"], "web", "$.containers[1].name", "duplicate name"),
        (["version"], 2, "$.version", "unsupported version"),
        (["verity_corruption"], "ignore", "$.verity_corruption", "must be one of"),
        (["debug_console", "commands"], ["shell"], "$.debug_console.commands", "unknown commands"),
        (["network", "kinds"], ["iptables"], "$.network.kinds", "unknown kinds"),
    ],
)
def test_bad_documents_name_the_path(path: list[Any], value: Any, where: str, message: str) -> None:
    with pytest.raises(PolicyFormatError) as info:
        _parse(_with(path, value))
    assert info.value.path == where
    assert message in info.value.message
    assert info.value.code is ErrorCode.POLICY_INVALID


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"version": 1, "version": 1, "containers": []}', "duplicate key"),
        (b'{"version": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"version": 1,', "invalid JSON"),
        (b"[]", "expected an object"),
    ],
)
def test_bad_json(raw: bytes, message: str) -> None:
    with pytest.raises(PolicyFormatError, match=message):
        parse_policy(raw)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a)\\1", "invalid escape sequence"),  # backreference: no linear-time match
        ("(?=a)a", "invalid perl operator"),  # look-ahead
        ("(?P<x>a)(?P=x)", "invalid perl operator"),
        ("a\\Z", "invalid escape sequence"),  # Python's \Z; RE2 spells it \z
    ],
)
def test_patterns_re2_cannot_match_in_linear_time_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(PolicyFormatError, match=why) as info:
        compile_pattern(pattern, "$.p")
    assert info.value.path == "$.p"


@pytest.mark.parametrize("pattern", ["K=.*", "PORT=[0-9]{1,5}", "(ab){2}c", "x(a|b)y", "a+b*"])
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert compile_pattern(pattern, "$.p").source == pattern


def test_patterns_are_anchored_and_inputs_bounded() -> None:
    pattern = compile_pattern("K=[a-z]+", "$.p")
    assert pattern.matches("K=abc")
    assert not pattern.matches("XK=abc") and not pattern.matches("K=abc1")
    assert compile_pattern("K=.*", "$.p").matches("K=" + "a" * 100)
    assert not compile_pattern("K=.*", "$.p").matches("K=" + "a" * MAX_INPUT_LENGTH)


def test_overlong_pattern_is_refused() -> None:
    with pytest.raises(PolicyFormatError, match="longer than"):
        compile_pattern("a" * 2000, "$.p")
