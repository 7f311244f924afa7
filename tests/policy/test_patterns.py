"""Policy patterns are RE2: ASCII classes, linear-time matching, refused inputs never raise."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from guestagent.policy.containers import EnvMatcher, EnvRule
from guestagent.policy.document import parse_policy
from guestagent.policy.patterns import MAX_INPUT_LENGTH, PatternSet, compile_pattern

ARABIC_INDIC = "\u0668\u0660\u0668\u0660"  # 8080 in Arabic-Indic digits
FULLWIDTH = "\uff18\uff10\uff18\uff10"  # 8080 in fullwidth digits


@pytest.mark.parametrize("digits", [ARABIC_INDIC, FULLWIDTH, "\u0968\u0966"])
def test_digit_class_is_ascii_only(digits: str) -> None:
    port = compile_pattern(r"PORT=\d{2,5}", "$.p")
    assert port.matches("PORT=8080")
    assert not port.matches(f"PORT={digits}")


@pytest.mark.parametrize(
    ("pattern", "text"),
    [(r"N=\w+", "N=\u00e9t\u00e9"), (r"N=\s", "N=\u00a0"), (r"N=\w+", "N=\u0661")],
)
def test_word_and_space_classes_are_ascii_only(pattern: str, text: str) -> None:
    assert not compile_pattern(pattern, "$.p").matches(text)


def test_dot_matches_any_character_but_newline() -> None:
    anything = compile_pattern("K=.*", "$.p")
    assert anything.matches("K=\u00e9\u4e2d\U0001f600")
    assert not anything.matches("K=a\nb")


def _longest(prefix: str, filler: str, last: str) -> tuple[str, str]:
    """(refused, accepted): `prefix` + `filler`s, then `last` in the accepted one, which is
    exactly as long as an input may be."""
    body = prefix + filler * (MAX_INPUT_LENGTH - len(prefix) - 1)
    return body, body + last


@pytest.mark.parametrize(
    ("pattern", "inputs"),
    [
        # 63 s on 1,000 characters under Python's backtracking `re` (issue 12).
        ("FOO=.*,.*,.*,.*;", _longest("FOO=", ",", ";")),
        ("(a+)+b", _longest("", "a", "b")),
        ("(.*)*x", _longest("", "y", "x")),
        ("(a|aa)*c", _longest("", "a", "c")),
    ],
)
def test_nested_repeats_load_and_answer_on_the_longest_inputs(
    pattern: str, inputs: tuple[str, str]
) -> None:
    """Patterns a backtracking engine takes exponential time on: RE2 answers in one pass, so
    this completes (the whole parametrization runs in well under a second)."""
    refused, accepted = inputs
    compiled = compile_pattern(pattern, "$.p")
    assert len(accepted) == MAX_INPUT_LENGTH
    assert not compiled.matches(refused)
    assert compiled.matches(accepted)


def test_engine_denies_a_long_env_value_against_a_nested_pattern() -> None:
    from guestagent.policy.rules._match import match_env

    rules = (EnvRule("FOO=.*,.*,.*,.*;", "re2", False, compile_pattern("FOO=.*,.*,.*,.*;", "")),)
    matcher = EnvMatcher.build(rules)
    env = ["FOO=" + "," * 30000]
    kept, failure = match_env(matcher, env, dropping=False)
    assert kept is None and failure is not None and failure["asked"] == env[0]
    assert matcher.allows("FOO=a,b,c,d;")


@pytest.mark.parametrize("text", ["K=\udc80", "\ud800", "K=" + "a" * (MAX_INPUT_LENGTH + 1)])
def test_unencodable_or_overlong_inputs_never_match_and_never_raise(text: str) -> None:
    assert not compile_pattern("K=.*|.*", "$.p").matches(text)
    assert not PatternSet(["K=.*", ".*"]).any(text)


def test_set_matches_if_any_pattern_matches_whole() -> None:
    patterns = PatternSet(["A=[0-9]+", "A=.*", "B=x"])
    assert patterns.any("A=12") and patterns.any("A=x") and patterns.any("B=x")
    assert not patterns.any("XA=1") and not patterns.any("B=xx")


def test_remembered_verdicts_are_the_automaton_s() -> None:
    """Short inputs are answered from memory after the first time: the same answer."""
    patterns = PatternSet([r"PORT=\d{2,5}"])
    for text in ["PORT=8080", f"PORT={ARABIC_INDIC}", "PORT=1", "PORT=80" + "0" * 300]:
        first = patterns.any(text)
        assert first == patterns.any(text) == patterns._match(text)
        assert first is (text == "PORT=8080")


def test_inline_flags_combine_in_one_env_matcher() -> None:
    """Rules RE2 keeps apart in its set: flags and groups of one never leak into another."""
    rules = tuple(
        EnvRule(p, "re2", False, compile_pattern(p, "")) for p in ("(?i)lang=c", "(x)=1", "B=y")
    )
    matcher = EnvMatcher.build(rules)
    assert all(map(matcher.allows, ["LANG=C", "x=1", "B=y"]))
    assert not matcher.allows("B=Y")


def _policy(env_rules: list[dict[str, Any]]) -> bytes:
    container: dict[str, Any] = {"name": "c", "layers": ["a" * 64], "command": ["/bin/true"]}
    container["env_rules"] = env_rules
    return json.dumps({"version": 1, "containers": [container]}).encode()


def test_patterns_compile_at_policy_load() -> None:
    policy = parse_policy(_policy([{"pattern": r"PORT=\d{2,5}", "strategy": "re2"}]))
    matcher = policy.containers[0].env_matcher
    assert matcher.allows("PORT=443") and not matcher.allows(f"PORT={ARABIC_INDIC}")


def test_re2_loads_at_the_first_pattern_not_with_the_module() -> None:
    # A policy without pattern rules never loads RE2; the first pattern does, and matches.
    code = (
        "import sys; from guestagent.policy import patterns; assert 're2' not in sys.modules; "
        "p = patterns.compile_pattern('demo-host_1', 'x'); assert 're2' not in sys.modules; "
        "assert p.matches('demo-host_1') and not p.matches('demo-host_'); "
        "p = patterns.compile_pattern('a+', 'x'); assert 're2' in sys.modules; "
        "assert p.matches('aaa') and not p.matches('b')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


LITERAL_TEXTS = [
    "demo",
    "Demo",
    "demo\n",
    "dem",
    "demox",
    "",
    "DEMO-1",
    "demo-1_a",
    "\ud800",
    "x" * 40000,
]


@pytest.mark.parametrize("source", ["demo", "demo-1_a", "DEMO-1", "a", "0"])
def test_a_literal_pattern_matches_what_re2_matches(source: str) -> None:
    # Compared as a string without RE2: each verdict equals the RE2 automaton's.
    literal = compile_pattern(source, "$.p")
    automaton = PatternSet((source,))
    assert type(literal.automaton).__name__ == "LiteralSet"
    for text in [*LITERAL_TEXTS, source, source + source]:
        assert literal.matches(text) == automaton.any(text), text
