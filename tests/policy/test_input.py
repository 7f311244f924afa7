"""The input check of each point: well-formed inputs pass, and every malformed one is refused
with the place named. A plain recursive reading of the schema is the oracle."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.policy.engine import decide
from guestagent.policy.rules import create, process
from guestagent.policy.rules._common import BadInput
from guestagent.policy.rules._input import MAX_FIELD_TEXT, MAX_LIST, Schema, check_input
from tests.policy.world import PATH, TEMPLATES, build_state, device, load_policy


class Text(str):
    """A str subclass: the schema wants exactly str."""


class Number(int):
    """An int subclass: inputs hold exact ints."""


CREATE = {
    **copy.deepcopy(TEMPLATES["create_web"]),
    "sysctl": {"net.core.somaxconn": "1"},
    "devices": [device("/dev/fuse")],
    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
    "resources": {"memory.max": 1 << 30, "cpu.weight": "100"},
    "oom_score_adj": 0,
}
EXEC_KEYS = (
    "container_id",
    "argv",
    "env",
    "working_dir",
    "user",
    "capabilities",
    "no_new_privileges",
    "terminal",
    "umask",
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
    for _ in range(1):
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


def _text(value: Any) -> bool:
    return type(value) is str and "\x00" not in value and len(value) <= MAX_FIELD_TEXT


def _texts(value: Any) -> bool:
    return type(value) is list and len(value) <= MAX_LIST and all(map(_text, value))


def _u32(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**32


def _fields(value: Any, oracle: dict[str, Any]) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == set(oracle)
        and all(oracle[k](value[k]) for k in oracle)
    )


_USER = {
    "uid": _u32,
    "gid": _u32,
    "additional_gids": lambda v: type(v) is list and all(map(_u32, v)),
}
_CAPS = dict.fromkeys(("bounding", "effective", "inheritable", "permitted", "ambient"), _texts)
_MOUNT = {"destination": _text, "source": _text, "type": _text, "options": _texts}
_DEVICE = {"path": _text, "type": _text, **dict.fromkeys(("major", "minor", "file_mode"), _u32)}
_DEVICE |= {"uid": _u32, "gid": _u32}
_RLIMIT = {
    "type": _text,
    "soft": lambda v: type(v) is int and 0 <= v < 2**64,
    "hard": lambda v: type(v) is int and 0 <= v < 2**64,
}
_PROCESS = {
    "container_id": _text,
    "argv": _texts,
    "env": _texts,
    "working_dir": _text,
    "user": lambda v: _fields(v, _USER),
    "capabilities": lambda v: _fields(v, _CAPS),
    "no_new_privileges": lambda v: type(v) is bool,
    "terminal": lambda v: type(v) is bool,
    "umask": lambda v: v is None or _u32(v),
}
ORACLE_CREATE = {
    **_PROCESS,
    "seccomp_profile_sha256": _text,
    "mounts": lambda v: type(v) is list and all(_fields(m, _MOUNT) for m in v),
    "namespaces": _texts,
    "hooks": lambda v: type(v) is bool,
    "devices": lambda v: type(v) is list and all(_fields(d, _DEVICE) for d in v),
    "sysctl": lambda v: type(v) is dict and all(map(_text, v)) and all(map(_text, v.values())),
    "rootfs": _text,
    "privileged": lambda v: type(v) is bool,
    "privileged_reasons": _texts,
    "host_namespaces": _texts,
    "joins": lambda v: type(v) is dict and all(map(_text, v)) and all(map(_text, v.values())),
    "unsupported_fields": _texts,
    "umask": lambda v: v is None or _u32(v),
    "device_conflicts": _texts,
    "readonly_rootfs": lambda v: type(v) is bool,
    "hostname": _text,
    "masked_paths": _texts,
    "readonly_paths": _texts,
    "rlimits": lambda v: type(v) is list and all(_fields(r, _RLIMIT) for r in v),
    "oom_score_adj": lambda v: v is None or (type(v) is int and -1000 <= v <= 1000),
    "resources": lambda v: (
        type(v) is dict
        and len(v) <= 64
        and all(map(_text, v))
        and all(_text(x) or (type(x) is int and -(2**63) <= x < 2**64) for x in v.values())
    ),
}


def _refusal(request: Any, schema: Schema) -> BadInput | None:
    try:
        check_input(request, schema)
    except BadInput as exc:
        return exc
    return None


def test_well_formed_requests_pass() -> None:
    assert _refusal(copy.deepcopy(CREATE), create.SCHEMA) is None
    assert _refusal(copy.deepcopy(EXEC), process.EXEC_SCHEMA) is None
    assert _refusal({**copy.deepcopy(CREATE), "umask": 0o22}, create.SCHEMA) is None
    assert _fields(CREATE, ORACLE_CREATE) and _fields(EXEC, _PROCESS)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.update(umask=True), "umask"),
        (lambda r: r.update(umask="022"), "umask"),
        (lambda r: r.update(umask=1.0), "umask"),
        (lambda r: r.update(hooks=1), "hooks"),
        (lambda r: r["argv"].append(Text("x")), "argv[3]"),
        (lambda r: r["env"].insert(0, "A=\x00"), "env[0]"),
        (lambda r: r.update(working_dir="/" * (MAX_FIELD_TEXT + 1)), "working_dir"),
        (lambda r: r["capabilities"]["ambient"].append(Text("CAP_KILL")), "capabilities"),
        (lambda r: r["capabilities"].pop("ambient"), "capabilities.ambient"),
        (lambda r: r["mounts"][1].update(options="ro"), "mounts[1].options"),
        (lambda r: r["mounts"][0].update(extra=1), "mounts[0].extra"),
        (lambda r: r["mounts"][0]["options"].append("a\x00"), "mounts"),
        (lambda r: r["mounts"].append("tmpfs"), "mounts[2]"),
        (lambda r: r["sysctl"].update({"k": 1}), "sysctl"),
        (lambda r: r["user"].update(uid=True), "user.uid"),
        (lambda r: r["user"].update(gid=Number(7)), "user.gid"),
        (lambda r: r["user"]["additional_gids"].append(-1), "user.additional_gids"),
        (lambda r: r.update(argv="/bin/sh"), "argv"),
        (lambda r: r.update(env=[PATH] * 4097), "env"),
        (lambda r: r.update(surprise=1), "surprise"),
        (lambda r: r.pop("rootfs"), "rootfs"),
        (lambda r: r["devices"][0].update(major=-1), "devices[0].major"),
        (lambda r: r["rlimits"][0].update(soft=2**64), "rlimits[0].soft"),
        (lambda r: r.update(oom_score_adj=1001), "oom_score_adj"),
        (lambda r: r["resources"].update({"pids.max": 1.5}), "resources.pids.max"),
        (lambda r: r.update(hostname=None), "hostname"),
    ],
)
def test_malformed_inputs_are_refused_naming_the_place(change: Any, where: str) -> None:
    request = copy.deepcopy(CREATE)
    change(request)
    refusal = _refusal(request, create.SCHEMA)
    assert refusal is not None and refusal.field == where
    assert not _fields(request, ORACLE_CREATE)
    decision = decide(POLICY, OVERLAY, "create_container", request)
    assert decision.rule == "create_container.input" and where in decision.reason


def _top(field: str) -> str:
    return field.split(".", 1)[0].split("[", 1)[0]


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_create_input_check_agrees_with_the_oracle(data: Any) -> None:
    request = _mutate(CREATE, data)
    refusal = _refusal(request, create.SCHEMA)
    assert (refusal is None) == _fields(request, ORACLE_CREATE)
    if refusal is not None:  # the named place is a field the oracle refuses
        top, oracle = _top(refusal.field), ORACLE_CREATE
        assert top not in request or top not in oracle or not oracle[top](request[top])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_exec_input_check_agrees_with_the_oracle(data: Any) -> None:
    request = _mutate(EXEC, data)
    refusal = _refusal(request, process.EXEC_SCHEMA)
    assert (refusal is None) == _fields(request, _PROCESS)
    if refusal is not None:
        top = _top(refusal.field)
        assert top not in request or top not in _PROCESS or not _PROCESS[top](request[top])


POLICY = load_policy("main")
OVERLAY = build_state(POLICY, "overlay")


def test_the_template_is_allowed() -> None:
    request = copy.deepcopy(TEMPLATES["create_web"])
    assert decide(POLICY, OVERLAY, "create_container", request).allowed


def _declared_schemas() -> list[tuple[str, Schema]]:
    import importlib
    import pkgutil

    from guestagent.policy import rules

    found = []
    for info in pkgutil.iter_modules(rules.__path__):
        module = importlib.import_module(f"{rules.__name__}.{info.name}")
        for name, value in vars(module).items():
            value = getattr(value, "schema", value)  # a ListOf's maps
            if isinstance(value, Schema):
                found.append((f"{info.name}.{name}", value))
    return found


def test_each_schema_compiles_at_its_first_use_not_at_import() -> None:
    # In a fresh interpreter: importing the rules writes no checker.
    code = (
        "import gc; import guestagent.policy.engine; from guestagent.policy.rules._input "
        "import Schema; print(sum(hasattr(o.check, '__code__') for o in gc.get_objects() "
        "if isinstance(o, Schema)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stderr
    declared = _declared_schemas()
    assert len(declared) >= 10, declared
    for name, schema in declared:  # and each one declared compiles, its source kept
        assert schema.check.source.startswith("def check(value, texts):\n"), name
        assert hasattr(schema.check, "__code__"), name  # the compiled function took its place
