"""The one-pass input checks of create_container and exec_in_container never accept what the
exact schema check rejects, and decisions are the same with or without them."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.policy.engine import decide
from guestagent.policy.rules import _common, create, process
from guestagent.policy.rules._fastinput import create_input_ok, exec_input_ok
from tests.policy.world import PATH, TEMPLATES, build_state, load_policy


class Text(str):
    """A str subclass: the schema wants exactly str."""


class Number(int):
    """An int subclass: the fast check declines it, the schema takes it."""


CREATE = {**copy.deepcopy(TEMPLATES["create_web"]), "sysctl": {"net.core.somaxconn": "1"}}
EXEC_KEYS = (
    "container_id",
    "argv",
    "env",
    "working_dir",
    "user",
    "capabilities",
    "no_new_privileges",
    "terminal",
)
EXEC = {k: copy.deepcopy(CREATE[k]) for k in EXEC_KEYS}

ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**32,
    Number(7),
    1.5,
    "",
    "x",
    "a\x00b",
    "y" * 70000,
    Text("x"),
    b"x",
    [],
    ["x"],
    ["x", 1],
    ["x\x00"],
    [Text("x")],
    ("x",),
    ["z"] * 4097,
    {},
    {"x": "y"},
    {"x": 1},
    {1: "x"},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a request a mutation can hit: dict keys and list items, nested."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.append((*prefix, i))
            found.extend(_paths(item, (*prefix, i)))
    return found


def _mutate(request: dict[str, Any], data: Any) -> dict[str, Any]:
    request = copy.deepcopy(request)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(request)))
        parent = request
        for step in path[:-1]:
            parent = parent[step]
        kind = data.draw(st.sampled_from(["replace", "delete", "extra", "tuple"]))
        if kind == "replace":
            parent[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(ODD_VALUES)))
        elif kind == "delete":
            del parent[path[-1]]
        elif kind == "extra" and isinstance(parent, dict):
            parent["surprise"] = 1
        elif kind == "tuple" and isinstance(parent[path[-1]], list):
            parent[path[-1]] = tuple(parent[path[-1]])
    return request


def _schema_accepts(request: Any, schema: dict[str, Any]) -> bool:
    try:
        _common.check_input(request, schema)
    except _common.BadInput:
        return False
    return True


def test_well_formed_requests_take_the_fast_path() -> None:
    assert create_input_ok(copy.deepcopy(CREATE))
    assert exec_input_ok(copy.deepcopy(EXEC))
    assert create_input_ok({**copy.deepcopy(CREATE), "umask": 0o22})


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(umask=True),
        lambda r: r.update(umask="022"),
        lambda r: r.update(umask=1.0),
        lambda r: r.update(hooks=1),
        lambda r: r["argv"].append(Text("x")),
        lambda r: r["capabilities"]["ambient"].append(Text("CAP_KILL")),
        lambda r: r["mounts"][0]["options"].append("a\x00"),
        lambda r: r["sysctl"].update({"k": 1}),
        lambda r: r["user"].update(uid=True),
        lambda r: r["user"]["additional_gids"].append(-1),
        lambda r: r.update(argv="/bin/sh"),
        lambda r: r.update(env=[PATH] * 4097),
    ],
)
def test_fast_check_declines_what_the_schema_refuses(change: Any) -> None:
    request = copy.deepcopy(CREATE)
    change(request)
    assert not _schema_accepts(request, create.SCHEMA)
    assert not create_input_ok(request)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_create_fast_check_is_never_looser_than_the_schema(data: Any) -> None:
    request = _mutate(CREATE, data)
    if create_input_ok(request):
        assert _schema_accepts(request, create.SCHEMA)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_exec_fast_check_is_never_looser_than_the_schema(data: Any) -> None:
    request = _mutate(EXEC, data)
    if exec_input_ok(request):
        assert _schema_accepts(request, process.EXEC_SCHEMA)


POLICY = load_policy("main")
OVERLAY = build_state(POLICY, "overlay")


def _same(a: Any, b: Any) -> None:
    assert (a.allowed, a.rule, a.reason, a.code) == (b.allowed, b.rule, b.reason, b.code)
    assert a.details == b.details and a.data == b.data


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_decisions_are_those_of_the_exact_check(data: Any) -> None:
    request = copy.deepcopy(TEMPLATES["create_web"])
    if data.draw(st.booleans()):
        request = _mutate(request, data)
    fast = decide(POLICY, OVERLAY, "create_container", request)
    with mock.patch.object(create, "create_input_ok", lambda _: False):
        exact = decide(POLICY, OVERLAY, "create_container", request)
    _same(fast, exact)


def test_the_template_is_allowed_either_way() -> None:
    request = copy.deepcopy(TEMPLATES["create_web"])
    assert decide(POLICY, OVERLAY, "create_container", request).allowed
