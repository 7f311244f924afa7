"""Policy regular expressions: RE2 syntax and semantics, anchored full matches, compiled once.

RE2 (google-re2) matches in time linear in the input, so no pattern a policy can hold makes
a request slow: there is no backtracking to guard against. Its classes are ASCII (`\\d` is
[0-9], never an Arabic-Indic or fullwidth digit), and it refuses what it cannot match in
linear time (backreferences, look-around) when the policy loads, with RE2's own message.

Matching goes through an RE2 full-match Set (one anchored automaton): the one public call of
the binding that neither builds match objects nor maps offsets back, so it costs under a
microsecond. Two bounds remain, to keep the automata and each call small: patterns are at
most MAX_PATTERN_LENGTH characters, and inputs longer than MAX_INPUT_LENGTH never match.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from guestagent.policy._reader import PolicyFormatError
from guestagent.records import field, record

__all__ = [
    "MAX_INPUT_LENGTH",
    "MAX_PATTERN_LENGTH",
    "Pattern",
    "PatternSet",
    "compile_pattern",
]

MAX_PATTERN_LENGTH = 1024
MAX_INPUT_LENGTH = 32768


if TYPE_CHECKING:
    import re2


@lru_cache(maxsize=1)
def _re2() -> tuple[Any, re2.Options]:
    """RE2 and the options every pattern compiles with, loaded at the first pattern: a
    policy without pattern rules (and an agent awaiting its policy) never loads RE2 and its
    C++ runtime."""
    import re2

    options = re2.Options()
    options.never_capture = True  # only "does it match" is asked: no submatch tracking
    options.log_errors = False  # a bad pattern is reported as a PolicyFormatError instead
    return re2, options


class PatternSet:
    """Patterns matched together: `any(text)` is True if one of them matches `text` whole."""

    __slots__ = ("_set", "sources")

    def __init__(self, sources: Sequence[str]) -> None:
        self.sources = tuple(sources)
        re2, options = _re2()
        self._set = re2.Set.FullMatchSet(options)
        for source in self.sources:
            self._set.Add(source)
        self._set.Compile()

    def _match(self, text: str) -> bool:
        """False for an overlong or unencodable input (a lone surrogate has no UTF-8 form),
        and if RE2 gives up (its DFA out of memory): failing closed."""
        if len(text) > MAX_INPUT_LENGTH:
            return False
        try:
            return self._set.Match(text.encode()) is not None
        except UnicodeEncodeError:
            return False

    def any(self, text: str) -> bool:
        if len(text) <= REMEMBERED_LENGTH:
            return _remembered(self, text)
        return self._match(text)


# The verdicts on short inputs are remembered: the same variables and paths come back on
# every restart and every exec of a probe, and a dict lookup costs a tenth of an RE2 call.
# A verdict is a pure function of (patterns, text), so remembering changes no decision; the
# bound (4096 inputs of at most 256 characters) keeps it under a few MiB.
REMEMBERED_LENGTH = 256
_remembered = lru_cache(maxsize=4096)(PatternSet._match)


# A pattern of only letters, digits, '-' and '_' has no RE2 syntax in it: it full-matches
# exactly the text equal to it, so it is compared as a string (a hostname rule such as
# "demo" does not load RE2 and its C++ runtime into the agent).
_LITERAL = frozenset(string.ascii_letters + string.digits + "-_")


class LiteralSet:
    """A pattern without syntax: `any(text)` is True only for the text equal to it."""

    __slots__ = ("sources",)

    def __init__(self, source: str) -> None:
        self.sources = (source,)

    def any(self, text: str) -> bool:
        return text == self.sources[0]


@record
class Pattern:
    """A compiled, anchored pattern; `source` is the text the policy gave."""

    source: str
    automaton: PatternSet | LiteralSet = field(compare=False, repr=False)

    def matches(self, text: str) -> bool:
        return self.automaton.any(text)


def check_syntax(source: str, path: str) -> None:
    """Raise PolicyFormatError naming `path` unless `source` is a valid RE2 pattern."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PolicyFormatError(path, f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    re2, options = _re2()
    try:
        re2.compile(source, options)
    except re2.error as exc:
        why = exc.args[0] if exc.args else ""
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise PolicyFormatError(path, f"invalid regular expression (RE2): {why}") from None


def compile_pattern(source: str, path: str) -> Pattern:
    """Compile `source` for full matching, or raise PolicyFormatError naming `path`."""
    if len(source) <= MAX_PATTERN_LENGTH and _LITERAL.issuperset(source):
        return Pattern(source, LiteralSet(source))
    check_syntax(source, path)
    return Pattern(source, PatternSet((source,)))
