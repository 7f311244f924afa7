"""The Kata agent protocol inside a booted guest: the pod sequence a Kata shim runs, driven
over the guest's virtio-serial channel, first with the Python ttrpc client and then with the
Go client built on containerd's ttrpc library (tests/kata/go_client.py), which dials QEMU's
unix socket of that channel. The agent serves ttrpc on the channel (`--kata serial://agent.0`)
and its native protocol on vsock; the layer is a dm-verity device the agent opens itself; the
policy is adopted through HOST_DATA (by the Python client's SetPolicy; the Go client's
sequence then finds it in force, as a shim does with no policy to send)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from qemu_guest import Disk, Guest

from guestagent.demo import assets
from guestagent.errors import AgentError
from guestagent.kata.client import HEALTH, KataClient
from guestagent.kata.pb import health_pb2
from guestagent.policy.measure import measure
from tests.kata import pod
from tests.kata.go_client import GoToolchainMissing, build_kataclient, check, script
from tests.kata.pod_sequence import lifecycle


async def until_healthy(client: KataClient, attempts: int = 60) -> None:
    """Check until the agent answers, as the Kata shim does: bytes that reach the port before
    the agent has opened it are dropped with an EOF (see test_agent.py), so the first Check
    may never arrive. A late answer to an earlier attempt is ignored by the client."""
    for _ in range(attempts):
        try:
            await asyncio.wait_for(
                client.call(HEALTH, "Check", health_pb2.CheckRequest(),
                            health_pb2.HealthCheckResponse),
                5,
            )  # fmt: skip
            return
        except TimeoutError:
            continue
    raise AssertionError("the agent never answered Health.Check on the channel")


def test_pod_lifecycle_over_kata_in_a_guest(make_guest, tmp_path_factory) -> None:
    try:
        kataclient = build_kataclient(tmp_path_factory.mktemp("go"))
    except GoToolchainMissing as exc:
        pytest.fail(str(exc))
    base = tmp_path_factory.mktemp("kata-layer")
    try:
        image = assets.build_busybox_layer(base)
    except AgentError as exc:
        pytest.fail(exc.message)
    policy = pod.pod_policy(image.root_hash)
    serve_args = (
        f"--snp sim --sim-state /run/guestagent-sim --sim-host-data "
        f"{measure(policy).host_data_hex} --kata serial://agent.0"
    )
    guest: Guest = make_guest(
        # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can miss
        # its ticks and panic the boot; the check is pointless in an emulated machine.
        cmdline=(
            "no_timer_check guestagent.listen=vsock://any:1025 "
            f'guestagent.serve_args="{serve_args}"'
        ),
        disks=[Disk(Path(image.path), serial="layer0")],
    )
    started = time.monotonic()
    try:
        sock = guest.connect_channel()  # before the agent opens its port (see test_agent.py)
        guest.wait_for_console(r"speaking the Kata agent protocol", timeout=300)
        time.sleep(1.0)

        async def drive() -> None:
            client = await KataClient.from_socket(sock)
            try:
                await until_healthy(client)
                # /dev/vda is the root filesystem; the layer is the next disk.
                await asyncio.wait_for(lifecycle(client, policy, "/dev/vdb", None), 900)
            finally:
                await client.close()

        asyncio.run(drive())
        python_done = time.monotonic()
        # The agent reopens the port once the Python client is gone (EOF); then the Go
        # client dials QEMU's end of the channel and runs the same pod again.
        time.sleep(2.0)
        run = subprocess.run(
            [str(kataclient), str(guest.channel_path)],
            input=json.dumps(script("/dev/vdb", None)).encode(),
            capture_output=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr.decode()
        check(json.loads(run.stdout), host_tier=False)
    except BaseException:
        print(guest.console()[-8000:])  # the agent's log is on the guest's console
        raise
    print(
        f"\nKata pod lifecycle in the guest: Python client {python_done - started:.1f}s "
        f"(with the boot), Go client {time.monotonic() - python_done:.1f}s"
    )
