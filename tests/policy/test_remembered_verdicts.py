"""Remembered verdicts (mount lists, rules/_mounts.py; bounding lists, rules/_match.py)
never change a decision.

match_mounts remembers mount lists it found allowed, per policy container. These tests run
it against the uncached matching on generated mount lists, in an order that fills and
reuses the memory, across containers whose rules differ, and check the bound. granted_caps
remembers the bounding list last found equal to a policy set; the tests run it against set
equality on lists that differ from a remembered one by order, a duplicate or one name.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.capabilities import ALL_CAPABILITIES
from guestagent.policy.containers import CapabilitySets
from guestagent.policy.rules import _match, _mounts
from tests.policy import world

POLICY = world.load_policy("main")
CONTAINERS = POLICY.containers

_MOUNTS = st.sampled_from(
    [
        {"destination": "/data", "source": "/run/scratch/ab12/data", "type": "bind"},
        {"destination": "/data", "source": "/run/scratch/AB/data", "type": "bind"},
        {"destination": "/logs", "source": "/run/scratch/ab12/logs", "type": "bind"},
        {"destination": "/proc", "source": "proc", "type": "proc"},
        {"destination": "/dev", "source": "tmpfs", "type": "tmpfs"},
        {"destination": "/sys", "source": "sysfs", "type": "sysfs"},
    ]
)
_OPTIONS = st.lists(
    st.sampled_from(["rbind", "rw", "ro", "nosuid", "noexec", "nodev", "suid"]),
    max_size=4,
)


def _mount_list() -> Any:
    one = st.tuples(_MOUNTS, _OPTIONS).map(lambda mo: {**mo[0], "options": mo[1]})
    return st.lists(one, max_size=4)


def _uncached(index: int, mounts: list[dict[str, Any]], elevated: bool) -> Any:
    c = CONTAINERS[index]
    return _mounts._match(c.mounts, c.mounts_by_destination, mounts, elevated)


def _remembered(index: int, mounts: list[dict[str, Any]], elevated: bool) -> Any:
    c = CONTAINERS[index]
    return _mounts.match_mounts(c.mounts, c.mounts_by_destination, mounts, elevated)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(CONTAINERS) - 1), _mount_list(), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_remembered_verdicts_equal_the_matching(calls: list[Any]) -> None:
    for _ in range(2):  # the second round meets what the first remembered
        for index, mounts, elevated in calls:
            assert _remembered(index, mounts, elevated) == _uncached(index, mounts, elevated)


def test_an_allowed_list_is_not_allowed_for_another_container() -> None:
    web = next(i for i, c in enumerate(CONTAINERS) if c.mounts)
    other = next(i for i, c in enumerate(CONTAINERS) if not c.mounts)
    mounts = [
        {
            "destination": "/data",
            "source": "/run/scratch/ab/data",
            "type": "bind",
            "options": list(CONTAINERS[web].mounts[0].options),
        }
    ]
    assert _remembered(web, mounts, False) is None
    assert _remembered(web, mounts, False) is None  # now remembered
    denied = _remembered(other, mounts, False)
    assert denied is not None and denied["mount_index"] == 0
    # the options in another order are another list: decided afresh, and allowed
    assert _remembered(web, [{**mounts[0], "options": mounts[0]["options"][::-1]}], False) is None


def test_memory_is_bounded() -> None:
    c = next(c for c in CONTAINERS if c.mounts)
    for n in range(_mounts.REMEMBERED_LISTS + 10):
        source = f"/run/scratch/{n:x}/data"
        mounts = [
            {
                "destination": "/data",
                "source": source,
                "type": "bind",
                "options": list(c.mounts[0].options),
            }
        ]
        assert _mounts.match_mounts(c.mounts, c.mounts_by_destination, mounts, False) is None
        assert len(_mounts._allowed_lists) <= _mounts.REMEMBERED_LISTS
    long_source = "/run/scratch/" + "a" * _mounts.REMEMBERED_CHARS + "/data"
    mounts = [
        {
            "destination": "/data",
            "source": long_source,
            "type": "bind",
            "options": list(c.mounts[0].options),
        }
    ]
    before = len(_mounts._allowed_lists)
    assert _mounts.match_mounts(c.mounts, c.mounts_by_destination, mounts, False) is None
    assert len(_mounts._allowed_lists) == before  # too long to remember


_NAMES = sorted(ALL_CAPABILITIES)[:8]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_NAMES), max_size=6), min_size=1, max_size=10),
    st.lists(st.sampled_from(_NAMES), unique=True, max_size=6),
)
def test_remembered_bounding_lists_equal_set_equality(asked: list[Any], policy: list[Any]) -> None:
    want = frozenset(policy)
    empty: frozenset[str] = frozenset()
    sets = CapabilitySets(want, want, empty, want, empty)
    for _ in range(2):  # the second round meets what the first remembered
        for bounding in [*asked, sorted(policy), sorted(policy)[::-1]]:
            caps = {
                "bounding": bounding,
                "effective": bounding,
                "inheritable": [],
                "permitted": bounding,
                "ambient": [],
            }
            granted = _match.granted_caps(sets, caps)
            assert (granted is not None) == (frozenset(bounding) == want)
