"""create_container on random policies and requests: env and capabilities against plain
references, and every denial names a check that really fails for the candidate it names."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.policy.document import parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.rules import _process as proc
from guestagent.policy.rules import create
from guestagent.policy.rules._candidates import first_failure
from guestagent.policy.rules._match import DEFAULT_UNPRIVILEGED_CAPS, expected_caps, match_caps
from guestagent.policy.state import EMPTY_STATE
from tests.policy import world
from tests.policy.world import layer

LAYER = layer("shared")
CAPS = sorted(DEFAULT_UNPRIVILEGED_CAPS)
COMMANDS = [["/bin/a"], ["/bin/a", "-x"], ["/bin/b"]]
ENV_RULES = [
    {"pattern": "PATH=/bin", "strategy": "string"},
    {"pattern": "PORT=[0-9]{1,4}", "strategy": "re2"},
    {"pattern": "MODE=(fast|slow)", "strategy": "regex"},
]
ENV_VALUES = ["PATH=/bin", "PORT=80", "PORT=x", "MODE=slow", "EVIL=1"]
POLICY_MOUNTS = [
    {"type": "bind", "source": "/s/[a-z]+", "destination": "/data", "options": ["rbind", "rw"]},
    {"type": "bind", "source": "/s/.*", "destination": "/data", "options": ["rbind", "rw"]},
    {"type": "bind", "source": "/t", "destination": "/t", "options": ["ro"]},
]
MOUNTS = [
    {"destination": "/data", "source": "/s/abc", "type": "bind", "options": ["rw", "rbind"]},
    {"destination": "/data", "source": "/s/1", "type": "bind", "options": ["rbind", "rw"]},
    {"destination": "/t", "source": "/t", "type": "bind", "options": ["ro"]},
    {"destination": "/proc", "source": "proc", "type": "proc", "options": ["nosuid", "noexec"]},
    {
        "destination": "/proc",
        "source": "proc",
        "type": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {"destination": "/sys", "source": "sysfs", "type": "sysfs", "options": ["nosuid", "rw"]},
    {
        "destination": "/sys",
        "source": "sysfs",
        "type": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {"destination": "/dev", "source": "tmpfs", "type": "tmpfs", "options": ["nosuid", "dev"]},
    {"destination": "/dev", "source": "tmpfs", "type": "tmpfs", "options": ["nosuid", "suid"]},
    {
        "destination": "/sys",
        "source": "sysfs",
        "type": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "rw"],
    },
]
NAMESPACES = ["pid", "ipc", "uts", "mount", "network", "cgroup"]


@st.composite
def containers(draw: Any, index: int) -> dict[str, Any]:
    rules = draw(st.lists(st.sampled_from(range(len(ENV_RULES))), unique=True))
    return {
        "name": f"c{index}",
        "layers": [LAYER],
        "command": draw(st.sampled_from(COMMANDS)),
        "env_rules": [{**ENV_RULES[i], "required": draw(st.booleans())} for i in rules],
        "working_dir": draw(st.sampled_from(["/", "/app"])),
        "user": {
            "uid": draw(st.sampled_from([0, 1000, {"min": 1000, "max": 2000}])),
            "gid": 0,
            "additional_gids": draw(st.sampled_from([[], [10]])),
        },
        "capabilities": draw(st.sampled_from([None, {n: CAPS[:3] for n in create_caps()}])),
        "no_new_privileges": draw(st.booleans()),
        "seccomp_profile_sha256": draw(st.sampled_from(["", layer("seccomp")])),
        "mounts": draw(st.lists(st.sampled_from(POLICY_MOUNTS), max_size=3)),
        "allow_elevated": draw(st.booleans()),
        "allow_terminal": draw(st.booleans()),
        "allow_stdio_access": draw(st.booleans()),
        "host_network": draw(st.booleans()),
        "devices": draw(st.sampled_from([[], ["/dev/fuse"]])),
        "sysctls": draw(st.sampled_from([{}, {"net.x": "1"}])),
        **draw(st.sampled_from(RUNTIME_POLICIES)),
    }


NOFILE_1024 = {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
# Runtime fields of a policy container: none (the defaults), or each set.
RUNTIME_POLICIES = [
    {},
    {"umask": "0077", "hostname": "web-[0-9]+", "masked_paths": ["/etc/motd"]},
    {
        "readonly_paths": ["/app"],
        "rlimits": [NOFILE_1024],
        "oom_score_adj": {"min": -997, "max": 0},
    },
]


def create_caps() -> tuple[str, ...]:
    return ("bounding", "effective", "inheritable", "permitted", "ambient")


@st.composite
def policies(draw: Any) -> Any:
    count = draw(st.integers(1, 4))
    spec = {
        "version": 1,
        "containers": [draw(containers(i)) for i in range(count)],
        "allow_environment_variable_dropping": draw(st.booleans()),
        "allow_capability_dropping": draw(st.booleans()),
    }
    return parse_policy(json.dumps(spec).encode())


def _fitting(container: Any) -> dict[str, Any]:
    """A request every check of `container` allows (env and caps may still miss)."""
    if container.capabilities is None:  # the runtime's default set
        caps = {n: CAPS for n in ("bounding", "effective", "permitted")}
        caps |= {"inheritable": [], "ambient": []}
    else:
        caps = {n: sorted(container.capabilities.get(n)) for n in create_caps()}
    return {
        "argv": list(container.command),
        "env": ["PATH=/bin", "PORT=80", "MODE=slow"],
        "working_dir": container.working_dir,
        "user": {"uid": container.user.uid.lo, "gid": 0, "additional_gids": []},
        "capabilities": caps,
        "no_new_privileges": True,
        "seccomp_profile_sha256": container.seccomp_profile_sha256,
        "mounts": [],
        "namespaces": NAMESPACES[:5],
        "devices": [world.device(path) for path in sorted(container.devices)],
        "sysctl": dict(container.sysctls),
        "terminal": False,
        "privileged": False,
    }


@st.composite
def requests(draw: Any, policy: Any) -> dict[str, Any]:
    """A request fitting one of the policy's containers, then a few fields drawn at random."""
    caps = draw(st.sampled_from([CAPS, CAPS[:3], CAPS[:3][::-1], [*CAPS[:3], "CAP_SYS_ADMIN"]]))
    fields = {
        "argv": st.sampled_from(COMMANDS),
        "env": st.lists(st.sampled_from(ENV_VALUES), max_size=4),
        "working_dir": st.sampled_from(["/", "/app"]),
        "user": st.fixed_dictionaries(
            {
                "uid": st.sampled_from([0, 1000, 1500, 3000]),
                "gid": st.sampled_from([0, 1]),
                "additional_gids": st.sampled_from([[], [10], [10, 11]]),
            }
        ),
        "capabilities": st.fixed_dictionaries(
            {
                "bounding": st.just(caps),
                "effective": st.sampled_from([list(caps), caps[:2]]),
                "inheritable": st.sampled_from([[], CAPS[:3]]),
                "permitted": st.sampled_from([caps, list(caps), caps[:2]]),
                "ambient": st.just([]),
            }
        ),
        "no_new_privileges": st.booleans(),
        "seccomp_profile_sha256": st.sampled_from(["", layer("seccomp").upper()]),
        "mounts": st.lists(st.sampled_from(MOUNTS), max_size=4),
        "namespaces": st.lists(st.sampled_from(NAMESPACES), unique=True, min_size=3),
        "devices": st.sampled_from([[], [world.FUSE], [world.MEM]]),
        "umask": st.sampled_from([None, 0o022, 0o077]),
        "hostname": st.sampled_from(["", "web-1", "other"]),
        "masked_paths": st.sampled_from([[], ["/proc/kcore"], ["/etc/motd"]]),
        "readonly_paths": st.sampled_from([[], ["/proc/sys"], ["/app"]]),
        "rlimits": st.sampled_from([[], [NOFILE_1024], [{**NOFILE_1024, "hard": 4096}]]),
        "oom_score_adj": st.sampled_from([None, 0, -997, 1000]),
        "sysctl": st.sampled_from([{}, {"net.x": "1"}, {"net.x": "2"}]),
        "terminal": st.booleans(),
        "privileged": st.booleans(),
    }
    index = draw(st.integers(0, len(policy.containers) - 1))
    request = _fitting(policy.containers[index])
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        request[name] = draw(fields[name])
    return {
        "container_id": "c1",
        "umask": None,
        **world.RUNTIME_FACTS,
        **request,
        "hooks": False,
        "rootfs": "/run/rootfs/c1",
        "privileged_reasons": [],
        "host_namespaces": [],
        "joins": {},
        "unsupported_fields": [],
    }


@st.composite
def cases(draw: Any) -> tuple[Any, dict[str, Any]]:
    policy = draw(policies())
    return policy, draw(requests(policy))


def _with_overlay(policy: Any) -> Any:
    state = decide(policy, EMPTY_STATE, "mount_device", {"target": "/l", "device_hash": LAYER})
    overlay = {"container_id": "c1", "layer_paths": ["/l"], "target": "/run/rootfs/c1"}
    return decide(policy, state.next_state.after, "mount_overlay", overlay).next_state.after


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_a_decision_is_what_the_checks_say(case: Any) -> None:
    """Allowed iff some candidate passes every check; a denial names, for each candidate it
    lists, the first check that fails for it, and the furthest one's field."""
    policy, request = case
    decision = decide(policy, _with_overlay(policy), "create_container", request)
    outcomes, datas = {}, []
    for index, container in enumerate(policy.containers):
        failed = first_failure(container, request, create.CHECKS.all)  # no shortcut
        if failed is None:
            data = proc.env_and_caps(policy, container, request, len(create.CHECKS))
            failed = None if isinstance(data, dict) else data
            datas += [data] if failed is None else []
        outcomes[index] = failed
    if datas and any(d != datas[0] for d in datas):
        assert decision.rule == "create_container.candidates"  # survivors that disagree
        return
    assert decision.allowed == bool(datas)
    if decision.allowed:
        survivors = [i for i, f in outcomes.items() if f is None]
        assert decision.data["candidates"] == [policy.containers[i].name for i in survivors]
        return
    furthest = max(rank for rank, _, _ in outcomes.values())
    assert decision.details["field"] in {f for r, f, _ in outcomes.values() if r == furthest}
    for named in decision.details["candidates"]:
        assert outcomes[named["index"]][1] == named["field"]


def test_allowed_data_names_the_surviving_candidates() -> None:
    spec = {
        "version": 1,
        "containers": [
            {"name": "first", "layers": [LAYER], "command": ["/bin/a"]},
            {"name": "second", "layers": [LAYER], "command": ["/bin/b"]},
        ],
    }
    policy = parse_policy(json.dumps(spec).encode())
    request = {
        "container_id": "c1",
        "argv": ["/bin/b"],
        "env": [],
        "working_dir": "/",
        "user": {"uid": 0, "gid": 0, "additional_gids": []},
        "capabilities": {
            "bounding": CAPS,
            "effective": CAPS,
            "inheritable": [],
            "permitted": CAPS,
            "ambient": [],
        },
        "no_new_privileges": True,
        "seccomp_profile_sha256": "",
        "mounts": [],
        "namespaces": NAMESPACES[:5],
        "hooks": False,
        "devices": [],
        "sysctl": {},
        "terminal": False,
        "rootfs": "/run/rootfs/c1",
        "privileged": False,
        "privileged_reasons": [],
        "host_namespaces": [],
        "joins": {},
        "unsupported_fields": [],
        "umask": None,
        **world.RUNTIME_FACTS,
    }
    decision = decide(policy, _with_overlay(policy), "create_container", request)
    assert decision.allowed, decision.reason
    assert decision.data["candidates"] == ["second"]
    assert decision.next_state.after.candidates["c1"] == (1,)


def _reference_env(rules: Any, env: list[str], dropping: bool) -> Any:
    """match_env as first written: each variable against each rule, in order."""
    kept = [v for v in env if any(r.matches(v) for r in rules)]
    if len(kept) != len(env) and not dropping:
        return None
    for rule in rules:
        if rule.required and not any(rule.matches(v) for v in kept):
            return None
    return kept


def _reference_caps(want: Any, asked: dict[str, list[str]], dropping: bool) -> Any:
    kept = {}
    for name in create_caps():
        have, allowed = frozenset(asked[name]), want.get(name)
        if have != allowed and not dropping:
            return None
        kept[name] = sorted(have & allowed)
    return kept


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_env_and_caps_shortcut_agrees_with_the_rules(case: Any) -> None:
    policy, request = case
    for container in policy.containers:
        got = proc.env_and_caps(policy, container, request, 0)
        env = _reference_env(
            container.env_rules, request["env"], policy.allow_environment_variable_dropping
        )
        privileged = container.allow_elevated and request["privileged"]
        want = expected_caps(container.capabilities, privileged)
        caps = _reference_caps(want, request["capabilities"], policy.allow_capability_dropping)
        if env is None or caps is None:
            assert isinstance(got, tuple)
            assert got[1] == ("env" if env is None else "capabilities")
        else:
            assert got == {
                "env": env,
                "capabilities": caps,
                "allow_stdio": container.allow_stdio_access,
                "attestation_socket": container.attestation_socket,
                "umask": container.runtime.umask,
            }


@st.composite
def asked_caps(draw: Any, want: Any) -> dict[str, list[str]]:
    """The policy's sets, each kept, reordered, duplicated, cut or grown at random."""
    asked = {}
    for name in create_caps():
        items = sorted(want.get(name))
        change = draw(st.sampled_from(["keep", "reverse", "twice", "cut", "grow"]))
        if change == "reverse":
            items = items[::-1]
        elif change == "twice":
            items = items + items[:1]
        elif change == "cut":
            items = items[1:]
        elif change == "grow":
            items = [*items, "CAP_SYS_ADMIN"]
        asked[name] = items
    if draw(st.booleans()):  # the spec's usual shape: one list for three sets
        asked["effective"] = asked["permitted"] = asked["bounding"]
    return asked


NAMED_CAPS = (
    parse_policy(
        json.dumps(
            {
                "version": 1,
                "containers": [
                    {
                        "name": "x",
                        "layers": [LAYER],
                        "command": ["/a"],
                        "capabilities": {n: CAPS[:3] for n in create_caps()},
                    }
                ],
            }
        ).encode()
    )
    .containers[0]
    .capabilities
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), privileged=st.booleans(), dropping=st.booleans())
def test_capabilities_granted_as_the_sets_say(data: Any, privileged: bool, dropping: bool) -> None:
    want = expected_caps(data.draw(st.sampled_from([None, NAMED_CAPS])), privileged)
    asked = data.draw(asked_caps(want))
    kept, _ = match_caps(want, asked, dropping)
    assert kept == _reference_caps(want, asked, dropping)
