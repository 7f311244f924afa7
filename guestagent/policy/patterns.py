"""Policy regular expressions: anchored full matches, compiled once, bounded in size.

Python's `re` backtracks, so a hostile or careless pattern can take exponential time. Three
bounds keep matching cheap: patterns are at most MAX_PATTERN_LENGTH characters; a pattern
whose repeated group itself contains an unbounded repeat (`(a+)+`, `(.*)*`, `(a|aa)*`-style
nesting) is refused at load time; and inputs longer than MAX_INPUT_LENGTH never match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

try:  # the parser behind `re`; named sre_parse before 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older interpreters
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from guestagent.policy._reader import PolicyFormatError

__all__ = ["MAX_INPUT_LENGTH", "MAX_PATTERN_LENGTH", "Pattern", "compile_pattern"]

MAX_PATTERN_LENGTH = 1024
MAX_INPUT_LENGTH = 32768

_REPEATS = {_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT, _sre_parse.POSSESSIVE_REPEAT}
_UNBOUNDED = _sre_parse.MAXREPEAT


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled, anchored pattern; `source` is the text the policy gave."""

    source: str
    regex: re.Pattern[str]

    def matches(self, text: str) -> bool:
        return len(text) <= MAX_INPUT_LENGTH and self.regex.fullmatch(text) is not None


def _children(av: object) -> list[object]:
    """The sub-pattern lists inside one parsed opcode argument."""
    found: list[object] = []
    stack = [av]
    while stack:
        item = stack.pop()
        if isinstance(item, _sre_parse.SubPattern):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def _has_unbounded_repeat(sub: object) -> bool:
    for op, av in sub:  # type: ignore[attr-defined]
        if op in _REPEATS and av[1] == _UNBOUNDED:
            return True
        if any(_has_unbounded_repeat(child) for child in _children(av)):
            return True
    return False


def _nested_repeat(sub: object) -> bool:
    """True if a repeat (with max > 1) wraps a body that holds an unbounded repeat."""
    for op, av in sub:  # type: ignore[attr-defined]
        if op in _REPEATS and av[1] > 1 and _has_unbounded_repeat(av[2]):
            return True
        if op in _REPEATS and av[1] > 1 and _alternation_in(av[2]) and av[1] == _UNBOUNDED:
            return True
        if any(_nested_repeat(child) for child in _children(av)):
            return True
    return False


def _alternation_in(sub: object) -> bool:
    """An unbounded repeat over an alternation (`(a|ab)*`) can also blow up: refuse it."""
    for op, av in sub:  # type: ignore[attr-defined]
        if op == _sre_parse.BRANCH:
            return True
        if op == _sre_parse.SUBPATTERN and _alternation_in(av[-1]):
            return True
    return False


def compile_pattern(source: str, path: str) -> Pattern:
    """Compile `source` for full matching, or raise PolicyFormatError naming `path`."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PolicyFormatError(path, f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        parsed = _sre_parse.parse(source)
        regex = re.compile(source)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PolicyFormatError(path, f"invalid regular expression: {exc}") from None
    if _nested_repeat(parsed):
        raise PolicyFormatError(
            path, "nested repetition (such as (a+)+ or (a|b)*) risks catastrophic backtracking"
        )
    return Pattern(source, regex)
