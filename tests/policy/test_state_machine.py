"""Random request sequences, valid and hostile, against random policies.

After every step: every mounted overlay is exactly some policy container's verified layers in
order; every created container matches its policy entry in every constrained field; and a
denial changed nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from guestagent.policy.document import parse_policy
from guestagent.policy.gate import PolicyGate
from guestagent.policy.rules._match import expected_caps
from tests.policy import world
from tests.policy.world import layer

HASHES = [layer(f"h{i}") for i in range(4)]
BOGUS = layer("not in any policy")
DEVICE_TARGETS = [f"/run/layers/{i}" for i in range(5)]
ROOTFS_TARGETS = [f"/run/rootfs/{i}" for i in range(3)]
CIDS = ["c1", "c2", "c3"]
# (rule, a value it matches)
ENV_POOL = [
    ({"pattern": "PATH=/bin", "strategy": "string"}, "PATH=/bin"),
    ({"pattern": "PORT=[0-9]{1,4}", "strategy": "re2"}, "PORT=80"),
    ({"pattern": "MODE=(fast|slow)", "strategy": "regex"}, "MODE=slow"),
    ({"pattern": "HOME=/root", "strategy": "string"}, "HOME=/root"),
]
COMMANDS = [["/bin/app"], ["/bin/app", "--x"], ["/bin/other"]]
BASE_NS = ["pid", "ipc", "uts", "mount", "network"]


@st.composite
def container_specs(draw: Any, index: int) -> dict[str, Any]:
    env = draw(st.lists(st.sampled_from(range(len(ENV_POOL))), unique=True, max_size=3))
    return {
        "name": f"p{index}",
        "layers": draw(st.lists(st.sampled_from(HASHES), min_size=1, max_size=3)),
        "command": draw(st.sampled_from(COMMANDS)),
        "env_rules": [{**ENV_POOL[i][0], "required": draw(st.booleans())} for i in env],
        "working_dir": draw(st.sampled_from(["/", "/app"])),
        "user": {"uid": draw(st.sampled_from([0, 1000])), "gid": 0, "additional_gids": []},
        "allow_elevated": draw(st.booleans()),
        "no_new_privileges": draw(st.booleans()),
        "exec_processes": [{"command": ["/bin/probe"], "signals": [15]}],
        "signals": draw(st.lists(st.sampled_from([9, 15]), unique=True)),
    }


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    return {
        "version": 1,
        "containers": [draw(container_specs(i)) for i in range(count)],
        "allow_environment_variable_dropping": draw(st.booleans()),
        "allow_capability_dropping": draw(st.booleans()),
        "allow_unencrypted_scratch": draw(st.booleans()),
    }


def _caps(caps: Any) -> dict[str, list[str]]:
    return {
        n: sorted(caps.get(n))
        for n in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }


HOSTILE = [
    "argv",
    "env",
    "user",
    "privileged",
    "hooks",
    "namespaces",
    "rootfs",
    "caps",
    "devices",
    "nnp",
    "terminal",
    "mount",
    "cid",
]


class PolicyMachine(RuleBasedStateMachine):
    @initialize(spec=policies())
    def adopt(self, spec: dict[str, Any]) -> None:
        self.policy = parse_policy(json.dumps(spec).encode())
        self.gate = PolicyGate(self.policy)
        self.created: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def _pick(self, data: Any, known: Any) -> str:
        """Mostly an id the state knows (so sequences get deep), sometimes any id."""
        known = sorted(known)
        if known and data.draw(st.integers(0, 3)):
            return data.draw(st.sampled_from(known))
        return data.draw(st.sampled_from(CIDS))

    def _ask(self, point: str, request: dict[str, Any]) -> Any:
        before = self.gate.state
        decision = self.gate.decide(point, request)
        assert self.gate.state is before  # deciding alone changes nothing
        if decision.allowed:
            self.gate.commit(decision)
        else:
            assert decision.next_state is None
            assert decision.rule.startswith(point) and decision.reason
        return decision

    @rule(where=st.sampled_from(DEVICE_TARGETS), digest=st.sampled_from([*HASHES, BOGUS]))
    def mount_device(self, where: str, digest: str) -> None:
        self._ask("mount_device", {"target": where, "device_hash": digest})

    @rule(where=st.sampled_from(DEVICE_TARGETS))
    def unmount_device(self, where: str) -> None:
        self._ask("unmount_device", {"target": where})

    @rule(
        cid=st.sampled_from(CIDS),
        where=st.sampled_from(ROOTFS_TARGETS + DEVICE_TARGETS[:1]),
        paths=st.lists(st.sampled_from(DEVICE_TARGETS), min_size=0, max_size=3),
    )
    def mount_overlay(self, cid: str, where: str, paths: list[str]) -> None:
        self._ask("mount_overlay", {"container_id": cid, "layer_paths": paths, "target": where})

    @rule(data=st.data(), cid=st.sampled_from(CIDS), where=st.sampled_from(ROOTFS_TARGETS))
    def mount_a_policy_rootfs(self, data: Any, cid: str, where: str) -> None:
        """The well-behaved host: mount one policy container's layers, then its overlay."""
        index = data.draw(st.integers(0, len(self.policy.containers) - 1))
        paths = []
        for digest in self.policy.containers[index].layers:
            path = f"/run/verity/{digest[:8]}"
            if self.gate.state.devices.get(path) != digest:
                self._ask("mount_device", {"target": path, "device_hash": digest})
            paths.append(path)
        self._ask("mount_overlay", {"container_id": cid, "layer_paths": paths, "target": where})

    @rule(data=st.data(), cid=st.sampled_from(CIDS), where=st.sampled_from(ROOTFS_TARGETS))
    def run_a_policy_container(self, data: Any, cid: str, where: str) -> None:
        """The well-behaved host end to end: rootfs, create as the policy says, start."""
        self.mount_a_policy_rootfs(data, cid, where)
        known = self.gate.state.candidates.get(cid)
        if known and cid not in self.gate.state.created:
            req = self._valid_create(cid, data.draw(st.sampled_from(known)))
            decision = self._ask("create_container", req)
            if decision.allowed:
                self.created[cid] = (copy.deepcopy(req), dict(decision.data))
                self._ask("start_container", {"container_id": cid})

    @rule(where=st.sampled_from(ROOTFS_TARGETS))
    def unmount_overlay(self, where: str) -> None:
        self._ask("unmount_overlay", {"target": where})

    @rule(where=st.sampled_from(["/run/s/0", "/run/s/1"]), encrypted=st.booleans())
    def mount_scratch(self, where: str, encrypted: bool) -> None:
        self._ask("mount_scratch", {"target": where, "encrypted": encrypted})

    def _valid_create(self, cid: str, index: int) -> dict[str, Any]:
        c = self.policy.containers[index]
        env = [ex for r, ex in ENV_POOL if any(er.pattern == r["pattern"] for er in c.env_rules)]
        return {
            "container_id": cid,
            "argv": list(c.command),
            "env": env,
            "working_dir": c.working_dir,
            "user": {"uid": c.user.uid.lo, "gid": c.user.gid.lo, "additional_gids": []},
            "capabilities": _caps(expected_caps(c.capabilities, False)),
            "no_new_privileges": True,
            "seccomp_profile_sha256": "",
            "mounts": [],
            "namespaces": list(BASE_NS),
            "hooks": False,
            "devices": [],
            "sysctl": {},
            "terminal": False,
            "rootfs": self.gate.state.rootfs.get(cid, "/run/rootfs/0"),
            "privileged": False,
            "privileged_reasons": [],
            "host_namespaces": [],
            "joins": {},
            "unsupported_fields": [],
            "umask": None,
        }

    @rule(data=st.data(), hostile=st.sets(st.sampled_from(HOSTILE), max_size=2))
    def create_container(self, data: Any, hostile: set[str]) -> None:
        cid = self._pick(data, set(self.gate.state.candidates) - self.gate.state.created)
        known = self.gate.state.candidates.get(cid)
        if known and data.draw(st.booleans()):
            index = data.draw(st.sampled_from(known))
        else:
            index = data.draw(st.integers(0, len(self.policy.containers) - 1))
        req = self._valid_create(cid, index)
        mutate = {
            "argv": lambda r: r["argv"].append("sh"),
            "env": lambda r: r["env"].append("EVIL=1"),
            "user": lambda r: r["user"].update(uid=4242),
            "privileged": lambda r: r.update(privileged=True),
            "hooks": lambda r: r.update(hooks=True),
            "namespaces": lambda r: r["namespaces"].remove("pid"),
            "rootfs": lambda r: r.update(rootfs="/"),
            "caps": lambda r: r["capabilities"]["bounding"].append("CAP_SYS_ADMIN"),
            "devices": lambda r: r.update(devices=[world.MEM]),
            "nnp": lambda r: r.update(no_new_privileges=False),
            "terminal": lambda r: r.update(terminal=True),
            "mount": lambda r: r["mounts"].append(
                {"destination": "/h", "source": "/", "type": "bind", "options": ["rbind"]}
            ),
            "cid": lambda r: r.update(container_id="c9"),
        }
        for name in sorted(hostile):
            mutate[name](req)
        decision = self._ask("create_container", req)
        if decision.allowed:
            self.created[req["container_id"]] = (copy.deepcopy(req), dict(decision.data))

    @rule(data=st.data())
    def start_container(self, data: Any) -> None:
        cid = self._pick(data, self.gate.state.created)
        self._ask("start_container", {"container_id": cid})

    @rule(data=st.data(), argv=st.sampled_from([["/bin/probe"], ["/bin/sh"]]))
    def exec_in_container(self, data: Any, argv: list[str]) -> None:
        cid = self._pick(data, self.gate.state.started)
        base = self.created.get(cid, (self._valid_create(cid, 0), {}))[0]
        keys = ("env", "working_dir", "user", "capabilities", "no_new_privileges", "terminal")
        keys += ("umask",)
        self._ask(
            "exec_in_container", {"container_id": cid, "argv": argv, **{k: base[k] for k in keys}}
        )

    @rule(data=st.data(), sig=st.sampled_from([9, 15]), init=st.booleans())
    def signal(self, data: Any, sig: int, init: bool) -> None:
        cid = self._pick(data, self.gate.state.started)
        self._ask(
            "signal_container_process",
            {"container_id": cid, "signal": sig, "is_init": init, "argv": ["/bin/probe"]},
        )

    @rule(data=st.data())
    def shutdown_container(self, data: Any) -> None:
        cid = self._pick(data, self.gate.state.created)
        if self._ask("shutdown_container", {"container_id": cid}).allowed:
            self.created.pop(cid, None)

    @invariant()
    def overlays_are_policy_layers_in_order(self) -> None:
        state = self.gate.state
        policy_layers = {c.layers for c in self.policy.containers}
        for overlay in state.overlays.values():
            assert overlay.layers in policy_layers
            assert tuple(state.devices[p] for p in overlay.layer_paths) == overlay.layers
            assert state.devices.keys() >= set(overlay.layer_paths)

    @invariant()
    def created_containers_match_their_policy_entry(self) -> None:
        state = self.gate.state
        assert set(self.created) == set(state.created)
        for cid, (req, data) in self.created.items():
            candidates = state.candidates[cid]
            assert candidates
            overlay = state.overlays[state.rootfs[cid]]
            assert req["rootfs"] == state.rootfs[cid]
            for index in candidates:
                c = self.policy.containers[index]
                assert overlay.layers == c.layers
                assert tuple(req["argv"]) == c.command
                assert req["working_dir"] == c.working_dir
                assert c.user.uid.allows(req["user"]["uid"])
                assert not req["hooks"] and not req["devices"] and not req["mounts"]
                assert set(BASE_NS) - {"network"} <= set(req["namespaces"])
                assert c.allow_elevated or not req["privileged"]
                assert req["no_new_privileges"] or not c.no_new_privileges
                assert all(any(r.matches(v) for r in c.env_rules) for v in data["env"])
                assert all(
                    any(r.matches(v) for v in data["env"]) for r in c.env_rules if r.required
                )
                want = expected_caps(c.capabilities, req["privileged"] and c.allow_elevated)
                assert all(set(v) <= want.get(k) for k, v in data["capabilities"].items())


PolicyMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPolicyMachine = PolicyMachine.TestCase
