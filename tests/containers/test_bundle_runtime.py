"""Issue 12's attacks, checked inside real containers: the spec is read into facts, the policy
engine decides, the bundle is built from the facts, and runc runs it. What the container sees
(its device node, umask, hostname, masked paths, rlimits, oom_score_adj) is what the policy
allows, whatever the spec claimed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from container_rootfs import build_busybox_rootfs, host_spec
from manager_helpers import run, running_manager
from tests_markers import requires_runtime

from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.spec import read_create
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE, PolicyState

pytestmark = requires_runtime

LAYER = hashlib.sha256(b"issue12 layer").hexdigest()
DEVICE = "/dev/fuse"  # policy names the path; the guest's node says what it is
SCRIPT = (
    "stat -c '%F %t:%T %a' /dev/fuse; umask; hostname; cat /proc/self/oom_score_adj;"
    " ulimit -Sn; ulimit -Hn; echo motd=$(cat /etc/motd);"
    " echo masked=$(cat /proc/keys /proc/interrupts | wc -c);"
    " test -e /dev/mem && echo mem || echo no-mem"
)
ARGV = ["/bin/sh", "-c", SCRIPT]
CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # host_spec's


def policy_of(**runtime: Any) -> Policy:
    entry = {
        "name": "probe",
        "layers": [LAYER],
        "command": ARGV,
        "env_rules": [{"pattern": "PATH=/bin", "strategy": "string"}, {"pattern": "TERM=xterm"}],
        "capabilities": {
            "bounding": CAPS,
            "effective": CAPS,
            "permitted": CAPS,
            "inheritable": [],
            "ambient": [],
        },
        "allow_stdio_access": True,
        "devices": [DEVICE],
        **runtime,
    }
    return parse_policy(json.dumps({"version": 1, "containers": [entry]}).encode())


def overlay_state(policy: Policy, cid: str, rootfs: str) -> PolicyState:
    state = EMPTY_STATE
    for point, request in (
        ("mount_device", {"target": "/run/layers/0", "device_hash": LAYER}),
        ("mount_overlay",
         {"container_id": cid, "layer_paths": ["/run/layers/0"], "target": rootfs}),
    ):  # fmt: skip
        decision = decide(policy, state, point, request)
        assert decision.allowed, decision.reason
        state = decision.next_state.after
    return state


def ruled(policy: Policy, cid: str, spec: dict[str, Any], rootfs: str) -> tuple[Decision, Any]:
    facts, seccomp = read_create(cid, spec, rootfs)
    return decide(policy, overlay_state(policy, cid, rootfs), "create_container", facts), (
        facts,
        seccomp,
    )


@pytest.fixture(scope="module")
def motd_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rootfs = build_busybox_rootfs(tmp_path_factory.mktemp("issue12") / "rootfs")
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "motd").write_text("verified layer says hi\n")
    return rootfs


@pytest.fixture
def oom_raised():
    """Our own oom_score_adj raised, as the agent's differs from 0 (systemd gives it -1000):
    a container must not inherit it."""
    path = Path("/proc/self/oom_score_adj")
    before = path.read_text()
    path.write_text("100")
    yield
    path.write_text(before)


def spec_of(**changes: Any) -> dict[str, Any]:
    spec = host_spec(ARGV)
    spec["hostname"] = "web-1"
    spec["process"].update(changes.pop("process", {}))
    spec["linux"].update(changes.pop("linux", {}))
    spec.update(changes)
    return spec


def run_allowed(tmp_path: Path, policy: Policy, spec: dict[str, Any], rootfs: Path) -> list[str]:
    async def scenario() -> list[str]:
        async with running_manager(tmp_path) as manager:
            cid = f"probe{os.getpid()}"
            decision, (facts, seccomp) = ruled(policy, cid, spec, str(rootfs))
            assert decision.allowed, decision.reason
            config = build_bundle_config(
                facts,
                decision.data,
                cgroups_path=manager.cgroups_path(cid),
                seccomp=seccomp,
            )
            await manager.create(cid, config)
            await manager.start(cid)
            io = manager.io(cid)
            out, err = await io.stdout.read_all(), await io.stderr.read_all()
            assert await manager.wait(cid, timeout=30) == 0, err
            return out.decode().splitlines()

    return run(scenario())


def test_the_container_gets_only_what_the_policy_allows(tmp_path, motd_rootfs, oom_raised):
    policy = policy_of(
        umask="0077",
        hostname="web-[0-9]+",
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
        oom_score_adj={"min": 0, "max": 500},
    )
    spec = spec_of(
        hostname="web-7",
        process={"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000}]},
        linux={"devices": [{"path": DEVICE, "type": "c"}]},
    )
    lines = run_allowed(tmp_path, policy, spec, motd_rootfs)
    fuse = os.stat(DEVICE)
    assert lines == [
        f"character special file {os.major(fuse.st_rdev):x}:{os.minor(fuse.st_rdev):x} "
        f"{fuse.st_mode & 0o777:o}",
        "0077",
        "web-7",
        "0",  # not the runtime's inherited 100
        "1000",
        "2000",
        "motd=verified layer says hi",
        "masked=0",
        "no-mem",
    ]


def test_a_masked_path_the_policy_allows_reads_empty_inside(tmp_path, motd_rootfs):
    """The masking attack with a policy that allows it: the spec's masked path applies (and
    the agent's stay); the same spec against a policy without it is denied (below)."""
    spec = spec_of(linux={"devices": [{"path": DEVICE, "type": "c"}], "maskedPaths": ["/etc/motd"]})
    del spec["hostname"]
    lines = run_allowed(tmp_path, policy_of(masked_paths=["/etc/motd"]), spec, motd_rootfs)
    assert lines[6:8] == ["motd=", "masked=0"]


def test_a_spec_without_oom_score_adj_gets_one_inside_the_policys_range(
    tmp_path, motd_rootfs, oom_raised
):
    """Leaving the field out does not buy the agent's default 0 when the policy says 100..500."""
    spec = spec_of(linux={"devices": [{"path": DEVICE, "type": "c"}]})
    del spec["hostname"]
    policy = policy_of(oom_score_adj={"min": 100, "max": 500})
    lines = run_allowed(tmp_path, policy, spec, motd_rootfs)
    assert lines[3] == "100"


def test_defaults_when_the_policy_and_spec_say_nothing(tmp_path, motd_rootfs):
    spec = spec_of(linux={"devices": [{"path": DEVICE, "type": "c"}]})
    del spec["hostname"]
    lines = run_allowed(tmp_path, policy_of(), spec, motd_rootfs)
    assert lines[1:4] == ["0022", f"probe{os.getpid()}", "0"]


@pytest.mark.parametrize(
    ("changes", "rule", "says"),
    [
        (
            {"linux": {"devices": [{"path": DEVICE, "type": "c", "major": 1, "minor": 1}]}},
            "create_container.devices",
            "linux.devices[0].major",
        ),
        (
            {"linux": {"devices": [{"path": DEVICE, "type": "b", "major": 7, "minor": 0}]}},
            "create_container.devices",
            "linux.devices[0].type",
        ),
        ({"linux": {"maskedPaths": ["/etc/motd"]}}, "create_container.masked_paths", "/etc/motd"),
        ({"linux": {"readonlyPaths": ["/etc"]}}, "create_container.readonly_paths", "/etc"),
        ({"process": {"user": {"uid": 0, "gid": 0, "umask": 0}}}, "create_container.umask", "0000"),
        ({"hostname": "web-x"}, "create_container.hostname", "web-x"),
        ({"process": {"oomScoreAdj": -1000}}, "create_container.oom_score_adj", "-1000"),
        (
            {"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 8192}]}},
            "create_container.rlimits",
            "RLIMIT_NOFILE",
        ),
        (
            {"process": {"rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]}},
            "create_container.rlimits",
            "RLIMIT_CORE",
        ),
    ],
)
def test_spec_claims_beyond_the_policy_are_denied(tmp_path, changes, rule, says):
    policy = policy_of(
        umask="0077",
        hostname="web-[0-9]+",
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
    )
    decision, _ = ruled(policy, "denied", spec_of(**changes), str(tmp_path))
    assert not decision.allowed
    assert decision.rule == rule
    assert says in decision.reason
