"""One timed boot: QEMU start to a container's first output byte, through the real agent.

Used by test_boot_timeline.py (the VM tier, every CI run) and benches/bench_boot.py (the table
for docs/performance.md, and the side-by-side against another image).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from boot_timeline import CMDLINE, ConsoleStamps, Stage, guest_stages, host_stage
from qemu_guest import Disk, Guest

from guestagent.client.sync_client import Client
from guestagent.demo import assets
from guestagent.policy.measure import measure
from guestagent.storage.layer import build_layer

__all__ = ["OLD_AGENT_MARGIN", "FlowResult", "TimelineLayer", "make_layer", "run_flow"]

# Today's agent logs "listening" once its serial port is open and read. An agent from before
# (an image compared with `timeline=False`) logged it when the listener was set up, the port
# opened by a task right after, and bytes sent before that were lost (test_agent.py): for such
# an image the host waits this long after the log line before its first bytes.
OLD_AGENT_MARGIN = 0.5


@dataclass(frozen=True)
class TimelineLayer:
    path: Path
    root_hash: str
    policy: bytes
    host_data: str


@dataclass
class FlowResult:
    handshake: float  # seconds from QEMU start to hello answered
    first_output: float | None  # seconds from QEMU start to the first output byte
    stages: list[Stage]  # host stages only, unless the image stamps its own (timeline=True)
    runtime: str | None  # the OCI runtime the agent chose (None: an agent that does not say)
    forked: bool = False  # init ran the agent in a fork of itself (no second interpreter)


def make_layer(work: Path) -> TimelineLayer:
    rootfs = assets.build_busybox_rootfs(work / "rootfs")
    image = build_layer(str(rootfs), str(work / "busybox.layer"), work_dir=str(work))
    policy = assets.demo_policy([image.root_hash])
    return TimelineLayer(Path(image.path), image.root_hash, policy, measure(policy).host_data_hex)


def serve_cmdline(layer: TimelineLayer) -> str:
    serve = f"--snp sim --sim-state /run/guestagent-sim --sim-host-data {layer.host_data}"
    return f'{CMDLINE} guestagent.serve_args="{serve}"'


def run_flow(
    start_guest: Callable[..., Guest],
    layer: TimelineLayer,
    *,
    timeline: bool = True,
    to_output: bool = True,
) -> FlowResult:
    """Boot, hand over the policy, mount the layer, run the demo container to its first
    output byte. `timeline`: the image stamps its stages (False for an image from before);
    `to_output`: False stops after the handshake (an agent that cannot read today's policy)."""
    guest = start_guest(cmdline=serve_cmdline(layer), disks=[Disk(layer.path, serial="layer0")])
    try:
        result = _drive(guest, layer, timeline, to_output)
        result.forked = "(in a fork of init)" in guest.console()
        return result
    except BaseException:
        print(guest.console()[-6000:])
        raise


def _drive(guest: Guest, layer: TimelineLayer, timeline: bool, to_output: bool) -> FlowResult:
    t0 = guest.started_at
    with ConsoleStamps(guest.console_log, t0) as stamps:
        sock = guest.connect_channel()
        guest.wait_for_console(r'"msg":"listening"', timeout=300)
        seen = time.monotonic() - t0
        first_from: float | None = seen  # the host speaks at once: the handshake runs from here
        if not timeline:
            time.sleep(OLD_AGENT_MARGIN)
            first_from = None  # its own stage below covers the wait
        sock.settimeout(300)
        client = Client(sock)
        steps: list[Stage] = []

        def step(name: str, action: Callable[[], object]) -> object:
            stage, result = host_stage(name, t0, action, steps[-1].end if steps else first_from)
            steps.append(stage)
            return result

        step("handshake (hello)", client.hello)
        if not to_output:
            client.close()
            handshake = steps[0]
            stages = [Stage("agent listening, seen by the host", 0.0, seen), handshake]
            return FlowResult(handshake.end, None, stages, None)
        step("policy adoption (report, HOST_DATA)", lambda: _set_policy(client, layer))
        step(
            "layer mount (dm-verity)",
            lambda: client.call("mount_layer", {"layer_id": "base", "source": "/dev/vdb"}),
        )
        step("scratch + overlay", lambda: _overlay(client))
        spec = {"container_id": "c1", "spec": assets.host_spec(), "stdin": True}
        step("runtime create", lambda: client.call("create_container", spec))
        step("runtime start", lambda: client.call("start_container", {"container_id": "c1"}))
        step("first output byte", lambda: _first_output(client))
        runtime = client.status().get("runtime")  # after the flow: not part of any stage
        client.close()
    stages = [Stage("agent listening, seen by the host (console poll)", 0.0, seen)]
    if timeline:
        guest_part = guest_stages(stamps)
        ready = guest_part[-1].end
        stages = [*guest_part, Stage("listening to seen by the host", ready, seen)]
    else:
        wait = Stage(f"host waits {OLD_AGENT_MARGIN}s before its first bytes", seen, steps[0].start)
        stages.append(wait)
    stages += steps
    return FlowResult(steps[0].end, steps[-1].end, stages, runtime)


def _set_policy(client: Client, layer: TimelineLayer) -> None:
    adopted = client.call("set_policy", {"policy": layer.policy})
    assert adopted["digest"] == layer.host_data, adopted


def _overlay(client: Client) -> None:
    client.call("mount_scratch", {"container_id": "c1"})
    client.call("mount_overlay", {"container_id": "c1", "layer_ids": ["base"]})


def _first_output(client: Client) -> bytes:
    while True:
        chunk = client.call(
            "read_output", {"container_id": "c1", "stream": "stdout", "timeout": 120}
        )
        if chunk["data"]:
            return chunk["data"]
        assert not chunk["eof"], "the container ended without output"


def as_json(result: FlowResult) -> str:
    return json.dumps(
        {
            "handshake_s": result.handshake,
            "first_output_s": result.first_output,
            "stages": [{"stage": s.name, "ms": round(s.ms, 1)} for s in result.stages],
        },
        indent=1,
    )
