"""The host spec -> enforcement input, and the bundle config we write (pure, table-driven)."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from container_rootfs import bundle_for, host_spec

from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.spec import enforcement_input, read_create, seccomp_sha256
from guestagent.errors import InvalidArgumentError
from guestagent.runtime_defaults import DEFAULT_MASKED_PATHS

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
        lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "hard": 9, "soft": 8}]),
        "rlimits",
        [{"type": "RLIMIT_NOFILE", "soft": 8, "hard": 9}],
    ),
    ("oomScoreAdj", lambda s: s["process"].update(oomScoreAdj=-997), "oom_score_adj", -997),
    ("umask", lambda s: s["process"]["user"].update(umask=0o77), "umask", 0o77),
    ("hostname", lambda s: s.update(hostname="web-1"), "hostname", "web-1"),
    ("readonly root", lambda s: s["root"].update(readonly=False), "readonly_rootfs", False),
    (
        "masked paths",
        lambda s: s["linux"].update(maskedPaths=["/etc/motd"]),
        "masked_paths",
        ["/etc/motd"],
    ),
    (
        "limits",
        lambda s: s["linux"].update(
            resources={
                "memory": {"limit": 1 << 30, "swap": None},
                "cpu": {"shares": 2, "cpus": "0-1"},
                "pids": {"limit": 64},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            }
        ),
        "resources",
        {
            "memory.limit": 1 << 30,
            "cpu.shares": 2,
            "cpu.cpus": "0-1",
            "pids.limit": 64,
            "hugepage.2MB": 0,
        },
    ),
    (
        "unruled limits",
        lambda s: s["linux"].update(
            resources={"memory": {"disableOOMKiller": True}, "blockIO": {"weight": 10}}
        ),
        "unsupported_fields",
        ["linux.resources.blockIO", "linux.resources.memory.disableOOMKiller"],
    ),
    ("domainname", lambda s: s.update(domainname="corp"), "unsupported_fields", ["domainname"]),
    (
        "user namespace",
        lambda s: s["linux"]["namespaces"].append({"type": "user"}),
        "unsupported_fields",
        ["linux.namespaces[5]"],
    ),
    (
        "accepted, replaced by the agent",
        lambda s: (
            s.update(annotations={"io.kubernetes.cri.container-type": "container"})
            or s["linux"].update(cgroupsPath="/kubepods/pod1/c1")
        ),
        "unsupported_fields",
        [],
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
        "device conflict",
        lambda s: s["linux"].update(devices=[{"path": "/dev/null", "type": "b", "major": 7}]),
        "device_conflicts",
        [
            "linux.devices[0].type: the spec states 'b', the guest's /dev/null has 'c'",
            "linux.devices[0].major: the spec states 7, the guest's /dev/null has 1",
        ],
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
    ("linux.cgroupsPath", lambda s: s["linux"].update(cgroupsPath=7)),
    ("process.env[2]", lambda s: s["process"].update(env=["A=1", "B=2", "A=3"])),
    ("process.rlimits[0].type", lambda s: s["process"].update(rlimits=[{"type": "NOFILE"}])),
    (
        "process.rlimits[0].soft",
        lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]),
    ),
    (
        "process.rlimits[1].type",
        lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}] * 2),
    ),
    ("process.oomScoreAdj", lambda s: s["process"].update(oomScoreAdj=-1001)),
    ("linux.resources.cpu.cpus", lambda s: s["linux"].update(resources={"cpu": {"cpus": "a"}})),
    ("root.readonly", lambda s: s["root"].update(readonly="yes")),
    ("process.consoleSize.height", lambda s: s["process"].update(consoleSize={"height": -1})),
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
        s["annotations"] = {"org.opencontainers.runc.exec.isolated-cpu-affinity-transition": "x"}

    return spec_with(change)


def test_bundle_never_carries_the_hosts_dangerous_fields():
    spec = hostile_spec()
    before = copy.deepcopy(spec)
    config = bundle_for(spec, ROOTFS, CGROUP)
    assert spec == before  # the host's dict is not modified
    assert config["root"] == {"path": ROOTFS, "readonly": True}
    assert "hooks" not in config and "annotations" not in config
    assert "uidMappings" not in config["linux"]
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


def test_agent_defaults_fill_what_the_spec_leaves_out():
    spec = spec_with(lambda s: s.pop("hostname"))
    config = bundle_for(spec, ROOTFS, CGROUP, container_id="c1")
    assert config["hostname"] == "c1"
    assert config["process"]["user"]["umask"] == 0o022
    assert config["process"]["oomScoreAdj"] == 0  # not the agent's own -1000
    assert "rlimits" not in config["process"]
    proc = next(m for m in config["mounts"] if m["destination"] == "/proc")
    assert {"nosuid", "noexec", "nodev"} <= set(proc["options"])


def test_the_decisions_umask_wins_and_the_facts_fill_the_rest():
    spec = spec_with(
        lambda s: s["process"].update(
            rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}], oomScoreAdj=500
        )
    )
    config = bundle_for(spec, ROOTFS, CGROUP, data={"umask": 0o077})
    process = config["process"]
    assert process["user"]["umask"] == 0o077
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    assert process["oomScoreAdj"] == 500


def test_devices_take_the_guest_nodes_numbers():
    spec = spec_with(lambda s: s["linux"].update(devices=[{"path": "/dev/null", "type": "c"}]))
    facts, _ = read_create("c1", spec, ROOTFS)
    assert facts["device_conflicts"] == []
    (node,) = facts["devices"]
    assert (node["path"], node["type"], node["major"], node["minor"]) == ("/dev/null", "c", 1, 3)
    config = build_bundle_config(facts, {}, cgroups_path=CGROUP)
    assert config["linux"]["devices"][0]["major"] == 1
    assert config["linux"]["resources"]["devices"][1] == {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("stated", "conflict"),
    [
        ({"path": "/dev/nonexistent-ga", "type": "c"}, "linux.devices[0].path: the guest has no"),
        ({"path": "/dev/../etc/passwd", "type": "c"}, "linux.devices[0].path: must be a normal"),
        ({"path": "/dev/null", "type": "c", "minor": 1}, "linux.devices[0].minor: the spec"),
        ({"path": "/dev/null", "type": "c", "fileMode": 0o600}, "linux.devices[0].fileMode"),
    ],
)
def test_device_conflicts_name_the_field(stated, conflict):
    spec = spec_with(lambda s: s["linux"].update(devices=[stated]))
    facts = enforcement_input("c1", spec, ROOTFS)
    assert facts["device_conflicts"][0].startswith(conflict)


def test_seccomp_must_be_the_profile_the_decision_saw():
    profile = {"defaultAction": "SCMP_ACT_ERRNO"}
    spec = spec_with(lambda s: s["linux"].update(seccomp=profile))
    facts, seccomp = read_create("c1", spec, ROOTFS)
    config = build_bundle_config(facts, {}, cgroups_path=CGROUP, seccomp=seccomp)
    assert config["linux"]["seccomp"] == profile
    with pytest.raises(InvalidArgumentError):
        build_bundle_config(facts, {}, cgroups_path=CGROUP, seccomp={"defaultAction": "x"})


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
    config = bundle_for(host_spec(["/bin/app"]), ROOTFS, CGROUP, data=data)
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
        bundle_for(host_spec(["/bin/app"]), ROOTFS, CGROUP, data=data)
    assert caught.value.details["path"] == path


def test_network_namespace_is_own_unless_the_agent_gives_one_or_the_host_network_is_allowed():
    facts = enforcement_input("c1", host_spec(["/bin/app"]), ROOTFS)
    own = build_bundle_config(facts, {}, cgroups_path=CGROUP)
    assert {"type": "network"} in own["linux"]["namespaces"]
    pod = build_bundle_config(facts, {}, cgroups_path=CGROUP, netns_path="/run/netns/p")
    assert {"type": "network", "path": "/run/netns/p"} in pod["linux"]["namespaces"]
    host = build_bundle_config(
        {**facts, "namespaces": ["pid", "ipc", "uts", "mount"]}, {}, cgroups_path=CGROUP
    )
    assert "network" not in {ns["type"] for ns in host["linux"]["namespaces"]}


@pytest.mark.parametrize("bad", ["relative/rootfs", ""])
def test_rootfs_must_be_an_absolute_agent_path(bad):
    with pytest.raises(InvalidArgumentError):
        bundle_for(host_spec(["/bin/app"]), bad, CGROUP)


def test_host_mounts_replace_defaults_at_the_same_destination():
    shm = {
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/run/sandbox/shm",
        "options": ["rbind"],
    }
    config = bundle_for(spec_with(lambda s: s.update(mounts=[shm])), ROOTFS, CGROUP)
    assert [m for m in config["mounts"] if m["destination"] == "/dev/shm"] == [shm]
