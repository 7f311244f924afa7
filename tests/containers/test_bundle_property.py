"""Construction, not filtering: config.json holds only agent constants and decided values.

For generated host specs (every field the OCI spec has, with random values), the spec is read
into facts, a decision's data is made from them, and the bundle is built. Then:
- every leaf of config.json is a leaf of the facts, of the decision data, or an agent constant
  (the seccomp profile is the one whose digest the facts carry);
- no value of a field the agent accepts but never applies (annotations, cgroupsPath, root.path,
  ociVersion, consoleSize) appears anywhere in config.json;
- changing only those fields changes nothing in config.json.
"""

from __future__ import annotations

import copy
from typing import Any

from container_rootfs import host_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.spec import read_create, seccomp_sha256
from guestagent.containers.spec_defaults import (
    DEFAULT_OOM_SCORE_ADJ,
    OCI_VERSION,
    agent_hostname,
    default_mounts,
    default_namespaces,
)
from guestagent.errors import InvalidArgumentError
from guestagent.runtime_defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    DEFAULT_UMASK,
    RLIMIT_TYPES,
)

ROOTFS = "/run/guestagent/rootfs/c1"
CGROUP = "/guestagent/c1"
NETNS = "/run/netns/pod1"
# Values only the unruled fields carry: if one shows up in config.json, it leaked.
MARK = "ZQX"
MARKED = st.text(alphabet="abc/.-", max_size=8).map(lambda s: f"{MARK}{s}")
NAMES = st.text(alphabet="ABCDEFGHIJ_", min_size=1, max_size=6)
VALUES = st.text(alphabet="abcdef0123:/=", max_size=12)
PATHS = st.text(alphabet="abcdefgh/", min_size=1, max_size=12).map(lambda s: "/" + s)
CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_NET_RAW"]
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]


def agent_constants() -> list[Any]:
    """What the agent writes on its own account."""
    return [
        OCI_VERSION,
        DEFAULT_UMASK,
        DEFAULT_OOM_SCORE_ADJ,
        DEFAULT_MASKED_PATHS,
        DEFAULT_READONLY_PATHS,
        default_mounts(),
        default_namespaces(NETNS),
        {"allow": False, "access": "rwm", "readonly": True},  # the device rule's leaves
        ["hard", "soft"],
    ]


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def keys_and_leaves(value: Any) -> list[Any]:
    """Leaves, and map keys too (the flat resource facts become OCI keys)."""
    if isinstance(value, dict):
        found: list[Any] = []
        for key, item in value.items():
            found += [key, *key.split("."), *keys_and_leaves(item)]
        return found
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in keys_and_leaves(item)]
    return [value]


def _typed(value: Any) -> tuple[type, Any]:
    return (type(value), value)  # True and 1 are different values here


@st.composite
def unruled(draw: Any) -> dict[str, Any]:
    """Values for the fields the agent accepts and replaces with its own."""
    return {
        "annotations": draw(st.dictionaries(MARKED, MARKED, max_size=3)),
        "cgroupsPath": draw(MARKED),
        "root_path": draw(MARKED),
        "ociVersion": draw(MARKED),
        "consoleSize": {"height": draw(st.integers(7001, 7100)), "width": 7777},
    }


def apply_unruled(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["annotations"] = values["annotations"]
    spec["linux"]["cgroupsPath"] = values["cgroupsPath"]
    spec["root"]["path"] = values["root_path"]
    spec["ociVersion"] = values["ociVersion"]
    spec["process"]["consoleSize"] = values["consoleSize"]
    return spec


@st.composite
def specs(draw: Any) -> dict[str, Any]:
    spec = host_spec(draw(st.lists(VALUES, min_size=1, max_size=3).map(lambda a: ["/b", *a])))
    process, linux = spec["process"], spec["linux"]
    names = draw(st.lists(NAMES, unique=True, max_size=4))
    process["env"] = [f"{name}={draw(VALUES)}" for name in names]
    process["user"] = {"uid": draw(st.integers(0, 70000)), "gid": draw(st.integers(0, 70000))}
    if draw(st.booleans()):
        process["user"]["umask"] = draw(st.integers(0, 0o777))
    process["capabilities"] = {
        name: draw(st.lists(st.sampled_from(CAPS), unique=True))
        for name in ("bounding", "effective", "permitted", "inheritable", "ambient")
    }
    process["terminal"] = draw(st.booleans())
    process["noNewPrivileges"] = draw(st.booleans())
    types = draw(st.lists(st.sampled_from(sorted(RLIMIT_TYPES)), unique=True, max_size=3))
    process["rlimits"] = [
        {"type": t, "soft": draw(st.integers(0, 5000)), "hard": draw(st.integers(5000, 9000))}
        for t in types
    ]
    if draw(st.booleans()):
        process["oomScoreAdj"] = draw(st.integers(-1000, 1000))
    process["cwd"] = draw(PATHS)
    spec["hostname"] = draw(st.sampled_from(["", "web-1", "pod-a"]))
    spec["root"]["readonly"] = draw(st.booleans())
    spec["mounts"] = [
        {"destination": draw(PATHS), "type": "bind", "source": draw(PATHS), "options": ["rbind"]}
        for _ in range(draw(st.integers(0, 2)))
    ]
    linux["maskedPaths"] = draw(st.lists(PATHS, max_size=3))
    linux["readonlyPaths"] = draw(st.lists(PATHS, max_size=3))
    linux["namespaces"] = [
        {"type": t}
        for t in draw(
            st.lists(
                st.sampled_from(["pid", "network", "ipc", "uts", "mount", "cgroup", "time"]),
                unique=True,
            )
        )
    ]
    linux["devices"] = [
        {"path": path, "type": "c"}
        for path in draw(st.lists(st.sampled_from(DEVICES), unique=True, max_size=2))
    ]
    linux["sysctl"] = draw(st.dictionaries(NAMES.map(lambda n: f"net.{n}"), VALUES, max_size=2))
    linux["resources"] = {
        "memory": {"limit": draw(st.integers(-1, 1 << 40))},
        "cpu": {"shares": draw(st.integers(0, 1 << 20)), "cpus": draw(st.sampled_from(["", "0"]))},
        "pids": {"limit": draw(st.integers(-1, 9999))},
        "hugepageLimits": [{"pageSize": "2MB", "limit": draw(st.integers(0, 1 << 30))}],
        "devices": [{"allow": False, "access": "rwm"}],
    }
    if draw(st.booleans()):
        linux["seccomp"] = {"defaultAction": draw(st.sampled_from(["SCMP_ACT_ERRNO", "X"]))}
    return spec


@st.composite
def decision_data(draw: Any, facts: dict[str, Any]) -> dict[str, Any]:
    """What an allow could carry: env and capabilities kept (or narrowed), the umask."""
    env = facts["env"]
    return {
        "env": draw(st.sampled_from([env, env[:1], []])),
        "capabilities": {
            k: draw(st.sampled_from([v, []])) for k, v in facts["capabilities"].items()
        },
        "umask": draw(st.sampled_from([0o022, 0o077, 0o027])),
        "allow_stdio": True,
        "candidates": ["c"],
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), extra=unruled(), data=st.data())
def test_every_bundle_value_is_decided_or_the_agents(spec, extra, data):
    spec = apply_unruled(spec, extra)
    try:
        facts, seccomp = read_create("c1", spec, ROOTFS)
    except InvalidArgumentError:
        return  # refused before any decision: nothing is built
    assert facts["unsupported_fields"] == []
    decided = data.draw(decision_data(facts))
    netns = data.draw(st.sampled_from([None, NETNS]))
    config = build_bundle_config(
        facts, decided, cgroups_path=CGROUP, seccomp=seccomp, netns_path=netns
    )
    linux = config["linux"]
    if "seccomp" in linux:
        assert seccomp_sha256(linux.pop("seccomp")) == facts["seccomp_profile_sha256"] != ""
    else:
        assert facts["seccomp_profile_sha256"] == ""
    allowed = {
        _typed(v)
        for v in [
            *keys_and_leaves(facts),
            *leaves(decided),
            *leaves(agent_constants()),
            CGROUP,
            agent_hostname("c1"),
        ]
    }
    stray = [leaf for leaf in leaves(config) if _typed(leaf) not in allowed]
    assert stray == []
    assert MARK not in repr(config)
    # consoleSize's width never reaches config.json (unless a ruled fact happens to hold the
    # same number: Hypothesis draws the module's constants, 7777 among them, for integers).
    assert 7777 not in leaves(config) or 7777 in leaves(facts)


@settings(max_examples=100, deadline=None)
@given(spec=specs(), first=unruled(), second=unruled())
def test_fields_without_effect_never_change_the_bundle(spec, first, second):
    configs = []
    for values in (first, second):
        try:
            facts, seccomp = read_create("c1", apply_unruled(spec, values), ROOTFS)
        except InvalidArgumentError:
            return
        configs.append(build_bundle_config(facts, {}, cgroups_path=CGROUP, seccomp=seccomp))
    assert configs[0] == configs[1]
