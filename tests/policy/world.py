"""A test world: policies, named request templates and setup scenarios shared by the tests."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.rules._match import DEFAULT_UNPRIVILEGED_CAPS
from guestagent.policy.state import EMPTY_STATE, PolicyState


def layer(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


L1, L2, L3 = layer("base"), layer("app"), layer("tools")
DEFAULT_CAPS = sorted(DEFAULT_UNPRIVILEGED_CAPS)
CAPS = {
    "bounding": DEFAULT_CAPS,
    "effective": DEFAULT_CAPS,
    "inheritable": [],
    "permitted": DEFAULT_CAPS,
    "ambient": [],
}
PATH = "PATH=/usr/bin:/bin"

WEB = {
    "name": "web",
    "layers": [L1, L2],
    "command": ["/app/server", "--port", "8080"],
    "env_rules": [
        {"pattern": PATH, "strategy": "string", "required": True},
        {"pattern": "PORT=[0-9]{1,5}", "strategy": "re2", "required": False},
        # RE2 semantics: \d is ASCII only, and a nested pattern matches in linear time.
        {"pattern": "WORKERS=\\d{1,3}", "strategy": "re2", "required": False},
        {"pattern": "CSV=.*,.*,.*,.*;", "strategy": "re2", "required": False},
    ],
    "working_dir": "/app",
    "user": {"uid": 1000, "gid": 1000, "additional_gids": [10]},
    "mounts": [
        {
            "type": "bind",
            "source": "/run/scratch/[a-z0-9]+/data",
            "destination": "/data",
            "options": ["rbind", "rw"],
        }
    ],
    "exec_processes": [
        {"command": ["/app/health"], "signals": [15]},
        {"command": ["/bin/ls", "/data"], "working_dir": "/data"},
    ],
    "signals": [15],
    "allow_stdio_access": True,
    "attestation_socket": True,
}
WEB_DEBUG = {
    **copy.deepcopy(WEB),
    "name": "web-debug",
    "command": ["/app/server", "--debug"],
    "allow_stdio_access": True,
}
PRIV = {
    "name": "priv",
    "layers": [L3],
    "command": ["/bin/tool"],
    "allow_elevated": True,
    "host_network": True,
    "devices": ["/dev/fuse"],
    "sysctls": {"net.core.somaxconn": "1024"},
    "allow_terminal": True,
    "no_new_privileges": False,
    "capabilities": None,
    "seccomp_profile_sha256": layer("seccomp"),
}
MAIN_POLICY: dict[str, Any] = {
    "version": 1,
    "containers": [WEB, WEB_DEBUG, PRIV],
    "external_processes": [
        {
            "command": ["/bin/dmesg"],
            "env_rules": [{"pattern": PATH, "strategy": "string", "required": False}],
            "working_dir": "/",
            "allow_stdio_access": True,
        }
    ],
    "allow_properties_access": True,
    "allow_dump_stacks": True,
    "allow_runtime_logging": True,
    "allow_unencrypted_scratch": False,
    "network": {
        "allow_network_changes": True,
        "kinds": ["interface", "route"],
        "interface_patterns": ["eth[0-9]"],
    },
    "copy_file": {"destinations": ["/etc/resolv\\.conf", "/run/config/[a-z]+"], "max_size": 4096},
    "sandbox": {"id": "pod-[0-9]+", "hostname": "web-[a-z]+"},
    "debug_console": {"enabled": True, "commands": ["status", "containers"]},
}
LOCKED_POLICY: dict[str, Any] = {
    "version": 1,
    "containers": [WEB],
    "allow_environment_variable_dropping": True,
    "allow_capability_dropping": True,
    "allow_unencrypted_scratch": True,
}

# WEB with every runtime field set (issue 12): umask, hostname, paths, rlimits, oom, devices.
RUNTIME_POLICY: dict[str, Any] = {
    "version": 1,
    "containers": [
        {
            **copy.deepcopy(WEB),
            "name": "web-runtime",
            "umask": "0077",
            "hostname": "web-[0-9]+",
            "masked_paths": ["/app/secrets"],
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
            "oom_score_adj": {"min": -997, "max": 1000},
            "devices": ["/dev/null"],
        }
    ],
}

POLICIES = {"main": MAIN_POLICY, "locked": LOCKED_POLICY, "runtime": RUNTIME_POLICY}

USER = {"uid": 1000, "gid": 1000, "additional_gids": [10]}


def device(path: str, kind: str = "c", major: int = 10, minor: int = 229) -> dict[str, Any]:
    """A device fact as the agent reads it from the guest's node."""
    return {
        "path": path,
        "type": kind,
        "major": major,
        "minor": minor,
        "file_mode": 0o666,
        "uid": 0,
        "gid": 0,
    }


FUSE, MEM = device("/dev/fuse"), device("/dev/mem", "c", 1, 1)
# The facts the spec reader adds for the runtime fields, as a plain spec gives them.
RUNTIME_FACTS: dict[str, Any] = {
    "hostname": "",
    "readonly_rootfs": False,
    "masked_paths": [],
    "readonly_paths": [],
    "rlimits": [],
    "oom_score_adj": None,
    "resources": {},
    "device_conflicts": [],
}
TEMPLATES: dict[str, dict[str, Any]] = {
    "create_web": {
        "container_id": "c1",
        "argv": ["/app/server", "--port", "8080"],
        "env": [PATH, "PORT=8080"],
        "working_dir": "/app",
        "user": USER,
        "capabilities": CAPS,
        "no_new_privileges": True,
        "seccomp_profile_sha256": "",
        "mounts": [
            {
                "destination": "/data",
                "source": "/run/scratch/abc/data",
                "type": "bind",
                "options": ["rw", "rbind"],
            },
            {
                "destination": "/proc",
                "source": "proc",
                "type": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
        ],
        "namespaces": ["pid", "ipc", "uts", "mount", "network"],
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
        **RUNTIME_FACTS,
    },
    "exec_web": {
        "container_id": "c1",
        "argv": ["/app/health"],
        "env": [PATH],
        "working_dir": "/app",
        "user": USER,
        "capabilities": CAPS,
        "no_new_privileges": True,
        "terminal": False,
    },
}
TEMPLATES["create_priv"] = {
    **TEMPLATES["create_web"],
    "container_id": "p1",
    "argv": ["/bin/tool"],
    "env": [],
    "working_dir": "/",
    "user": {"uid": 0, "gid": 0, "additional_gids": []},
    "mounts": [],
    "namespaces": ["pid", "ipc", "uts", "mount"],
    "privileged": True,
    "privileged_reasons": ["all capabilities"],
    "no_new_privileges": False,
    "seccomp_profile_sha256": layer("seccomp"),
    "rootfs": "/run/rootfs/p1",
    "devices": [FUSE],
    "sysctl": {"net.core.somaxconn": "1024"},
    "terminal": True,
}

SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {"empty": []}
SCENARIOS["layers"] = [
    ("mount_device", {"target": "/run/layers/0", "device_hash": L1}),
    ("mount_device", {"target": "/run/layers/1", "device_hash": L2}),
    ("mount_device", {"target": "/run/layers/2", "device_hash": L3}),
]
SCENARIOS["overlay"] = [
    *SCENARIOS["layers"][:2],
    (
        "mount_overlay",
        {
            "container_id": "c1",
            "layer_paths": ["/run/layers/0", "/run/layers/1"],
            "target": "/run/rootfs/c1",
        },
    ),
]
SCENARIOS["created"] = SCENARIOS["overlay"] + [("create_container", TEMPLATES["create_web"])]
SCENARIOS["started"] = SCENARIOS["created"] + [("start_container", {"container_id": "c1"})]
SCENARIOS["exec"] = SCENARIOS["started"] + [("exec_in_container", TEMPLATES["exec_web"])]
SCENARIOS["scratch"] = [("mount_scratch", {"target": "/run/scratch/s1", "encrypted": True})]
SCENARIOS["priv_overlay"] = SCENARIOS["layers"] + [
    (
        "mount_overlay",
        {"container_id": "p1", "layer_paths": ["/run/layers/2"], "target": "/run/rootfs/p1"},
    ),
]


def load_policy(name: str) -> Policy:
    return parse_policy(json.dumps(POLICIES[name]).encode())


def build_state(policy: Policy, scenario: str) -> PolicyState:
    state = EMPTY_STATE
    for point, request in SCENARIOS[scenario]:
        decision = decide(policy, state, point, request)
        assert decision.allowed, (scenario, point, decision.reason)
        state = decision.next_state.after
    return state


def build_input(case: dict[str, Any]) -> Any:
    if "input" in case:
        return case["input"]
    request = copy.deepcopy(TEMPLATES[case["template"]])
    request.update(copy.deepcopy(case.get("patch", {})))
    for key in case.get("remove", []):
        request.pop(key)
    return request
