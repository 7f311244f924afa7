"""The host spec -> enforcement input, and the bundle config we write (pure, table-driven)."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from container_rootfs import host_spec

from guestagent.containers.spec import build_bundle_config, enforcement_input, seccomp_sha256
from guestagent.containers.spec_defaults import DEFAULT_MASKED_PATHS
from guestagent.errors import InvalidArgumentError

ROOTFS = "/run/guestagent/overlay/c1/rootfs"
CGROUP = "/guestagent/c1"


def spec_with(change) -> dict:
    spec = host_spec(["/bin/app", "--serve"])
    change(spec)
    return spec


def test_plain_spec_gives_the_documented_input():
    got = enforcement_input("c1", host_spec(["/bin/app"]), ROOTFS)
    assert got["container_id"] == "c1" and got["rootfs"] == ROOTFS
    assert got["argv"] == ["/bin/app"]
    assert got["env"] == ["PATH=/bin", "TERM=xterm"]
    assert got["user"] == {"uid": 0, "gid": 0, "additional_gids": []}
    assert got["capabilities"]["bounding"] == [
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
    ]
    assert got["capabilities"]["ambient"] == []
    assert got["namespaces"] == ["pid", "network", "ipc", "uts", "mount"]
    assert (got["hooks"], got["privileged"], got["terminal"]) == (False, False, False)
    assert (got["host_namespaces"], got["unsupported_fields"], got["devices"]) == ([], [], [])
    assert got["seccomp_profile_sha256"] == ""


FLAGGED = [
    # (description, change to the spec, input key, expected value)
    ("hooks", lambda s: s.update(hooks={"prestart": [{"path": "/x"}]}), "hooks", True),
    ("empty hooks", lambda s: s.update(hooks={"prestart": []}), "hooks", False),
    (
        "host netns",
        lambda s: s["linux"]["namespaces"].__setitem__(
            1, {"type": "network", "path": "/proc/1/ns/net"}
        ),
        "host_namespaces",
        ["network"],
    ),
    (
        "uid mappings",
        lambda s: s["linux"].update(uidMappings=[{"containerID": 0}]),
        "unsupported_fields",
        ["linux.uidMappings"],
    ),
    (
        "intelRdt",
        lambda s: s["linux"].update(intelRdt={"closID": "x"}),
        "unsupported_fields",
        ["linux.intelRdt"],
    ),
    (
        "shared propagation",
        lambda s: s["linux"].update(rootfsPropagation="rshared"),
        "unsupported_fields",
        ["linux.rootfsPropagation"],
    ),
    (
        "private propagation",
        lambda s: s["linux"].update(rootfsPropagation="rprivate"),
        "unsupported_fields",
        [],
    ),
    (
        "rlimits",
        lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_NOFILE"}]),
        "unsupported_fields",
        ["process.rlimits"],
    ),
    (
        "apparmor",
        lambda s: s["process"].update(apparmorProfile="unconfined"),
        "unsupported_fields",
        ["process.apparmorProfile"],
    ),
    ("unknown top-level", lambda s: s.update(vm={"hypervisor": {}}), "unsupported_fields", ["vm"]),
    (
        "unknown linux field",
        lambda s: s["linux"].update(futureThing=1),
        "unsupported_fields",
        ["linux.futureThing"],
    ),
    (
        "devices",
        lambda s: s["linux"].update(
            devices=[{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]
        ),
        "devices",
        ["/dev/sda"],
    ),
    (
        "sysctl",
        lambda s: s["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),
        "sysctl",
        {"net.ipv4.ip_forward": "1"},
    ),
    (
        "CAP_SYS_ADMIN",
        lambda s: s["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN"),
        "privileged_reasons",
        ["CAP_SYS_ADMIN requested"],
    ),
    (
        "all devices",
        lambda s: s["linux"].update(resources={"devices": [{"allow": True, "access": "rwm"}]}),
        "privileged_reasons",
        ["device cgroup allows all devices"],
    ),
    (
        "rw sysfs",
        lambda s: s.update(
            mounts=[{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["rw"]}]
        ),
        "privileged_reasons",
        ["writable sysfs at /sys"],
    ),
    (
        "no masking",
        lambda s: s["linux"].update(maskedPaths=[], readonlyPaths=[]),
        "privileged_reasons",
        ["no masked or read-only paths"],
    ),
    ("terminal", lambda s: s["process"].update(terminal=True), "terminal", True),
]


@pytest.mark.parametrize(
    ("change", "key", "expected"), [f[1:] for f in FLAGGED], ids=[f[0] for f in FLAGGED]
)
def test_privilege_relevant_fields_reach_the_input(change, key, expected):
    got = enforcement_input("c1", spec_with(change), ROOTFS)
    assert got[key] == expected
    assert got["privileged"] == bool(got["privileged_reasons"])


MALFORMED = [
    ("process.args", lambda s: s["process"].update(args=[])),
    ("process.args[1]", lambda s: s["process"].update(args=["/bin/a", 3])),
    ("process.env[0]", lambda s: s["process"].update(env=["NOEQUALS"])),
    ("process.cwd", lambda s: s["process"].update(cwd="relative")),
    ("process.user.uid", lambda s: s["process"]["user"].update(uid=-1)),
    ("process.user.gid", lambda s: s["process"]["user"].update(gid=True)),
    (
        "process.capabilities.bounding[0]",
        lambda s: s["process"]["capabilities"].update(bounding=["CAP_MADE_UP"]),
    ),
    ("process.capabilities.extra", lambda s: s["process"]["capabilities"].update(extra=[])),
    ("process.noNewPrivileges", lambda s: s["process"].update(noNewPrivileges="yes")),
    ("process", lambda s: s.pop("process")),
    ("mounts[0].destination", lambda s: s.update(mounts=[{"destination": "tmp"}])),
    ("mounts[0].options[0]", lambda s: s.update(mounts=[{"destination": "/t", "options": [1]}])),
    ("linux.namespaces[0]", lambda s: s["linux"].update(namespaces=[{"type": "bogus"}])),
    ("linux.devices[0].path", lambda s: s["linux"].update(devices=[{"type": "c"}])),
    ("linux.sysctl.a", lambda s: s["linux"].update(sysctl={"a": 1})),
    ("hooks", lambda s: s.update(hooks=["/bin/hook"])),
    ("annotations.k", lambda s: s.update(annotations={"k": 1})),
]


@pytest.mark.parametrize(("path", "change"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_specs_name_the_json_path(path, change):
    with pytest.raises(InvalidArgumentError) as caught:
        enforcement_input("c1", spec_with(change), ROOTFS)
    assert caught.value.details["path"] == path
    assert path in caught.value.message


def test_seccomp_hash_is_of_canonical_json():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
    }
    reordered = json.loads(json.dumps(profile, sort_keys=True)[::-1][::-1])
    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":")).encode()
    assert seccomp_sha256(profile) == hashlib.sha256(canonical).hexdigest()
    assert seccomp_sha256(dict(reversed(list(reordered.items())))) == seccomp_sha256(profile)
    got = enforcement_input("c1", spec_with(lambda s: s["linux"].update(seccomp=profile)), ROOTFS)
    assert got["seccomp_profile_sha256"] == seccomp_sha256(profile)


def hostile_spec() -> dict:
    def change(s):
        s["root"] = {"path": "/etc", "readonly": True}
        s["hooks"] = {"prestart": [{"path": "/bin/evil"}], "poststop": [{"path": "/x"}]}
        s["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/1/ns/net"}
        s["linux"]["cgroupsPath"] = "/"
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
        s["linux"]["maskedPaths"] = []
        s["linux"]["resources"] = {
            "devices": [{"allow": True, "access": "rwm"}],
            "memory": {"limit": 1 << 30},
        }
        s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1 << 20, "soft": 1 << 20}]

    return spec_with(change)


def test_bundle_never_carries_the_hosts_dangerous_fields():
    spec = hostile_spec()
    before = copy.deepcopy(spec)
    config = build_bundle_config(spec, {}, ROOTFS, cgroups_path=CGROUP)
    assert spec == before  # the host's dict is not modified
    assert config["root"] == {"path": ROOTFS, "readonly": False}
    assert "hooks" not in config
    assert "rlimits" not in config["process"] and "uidMappings" not in config["linux"]
    assert config["linux"]["cgroupsPath"] == CGROUP
    assert all("path" not in ns for ns in config["linux"]["namespaces"])
    assert {ns["type"] for ns in config["linux"]["namespaces"]} >= {"pid", "network", "mount"}
    assert set(DEFAULT_MASKED_PATHS) <= set(config["linux"]["maskedPaths"])
    resources = config["linux"]["resources"]
    assert resources["devices"] == [{"allow": False, "access": "rwm"}]
    assert resources["memory"] == {"limit": 1 << 30}
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations[:2] == ["/proc", "/dev"] and "/sys/fs/cgroup" in destinations
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]


@pytest.mark.parametrize(
    ("data", "env", "caps"),
    [
        ({}, ["PATH=/bin", "TERM=xterm"], ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
        (
            {"env": ["PATH=/bin"], "capabilities": {"bounding": ["CAP_KILL"]}},
            ["PATH=/bin"],
            ["CAP_KILL"],
        ),
        ({"env": [], "capabilities": {}}, [], []),
    ],
)
def test_env_and_capabilities_come_from_the_decision(data, env, caps):
    config = build_bundle_config(host_spec(["/bin/app"]), data, ROOTFS, cgroups_path=CGROUP)
    assert config["process"]["env"] == env
    assert config["process"]["capabilities"]["bounding"] == caps


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"env": ["=x"]}, "decision.env[0]"),
        ({"capabilities": {"bounding": ["CAP_NOPE"]}}, "decision.capabilities.bounding[0]"),
    ],
)
def test_malformed_decision_data_is_refused(data, path):
    with pytest.raises(InvalidArgumentError) as caught:
        build_bundle_config(host_spec(["/bin/app"]), data, ROOTFS, cgroups_path=CGROUP)
    assert caught.value.details["path"] == path


def test_network_namespace_is_own_unless_the_agent_gives_one():
    spec = host_spec(["/bin/app"])
    own = build_bundle_config(spec, {}, ROOTFS, cgroups_path=CGROUP)
    assert {"type": "network"} in own["linux"]["namespaces"]
    pod = build_bundle_config(spec, {}, ROOTFS, cgroups_path=CGROUP, netns_path="/run/netns/p")
    assert {"type": "network", "path": "/run/netns/p"} in pod["linux"]["namespaces"]


@pytest.mark.parametrize("bad", ["relative/rootfs", ""])
def test_rootfs_must_be_an_absolute_agent_path(bad):
    with pytest.raises(InvalidArgumentError):
        build_bundle_config(host_spec(["/bin/app"]), {}, bad, cgroups_path=CGROUP)


def test_host_mounts_replace_defaults_at_the_same_destination():
    shm = {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/run/sandbox/shm",
        "options": ["rbind"],
    }
    config = build_bundle_config(
        spec_with(lambda s: s.update(mounts=[shm])), {}, ROOTFS, cgroups_path=CGROUP
    )
    assert [m for m in config["mounts"] if m["destination"] == "/dev/shm"] == [shm]
