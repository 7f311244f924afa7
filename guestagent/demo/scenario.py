"""The scripted host conversation of `guestagent demo`, printed as a transcript."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guestagent.client import Client, RemoteError
from guestagent.client.display import to_json
from guestagent.demo import assets
from guestagent.errors import AgentError
from guestagent.policy.measure import measure

__all__ = ["Transcript", "missing_for_containers", "prepare_inputs", "run_conversation"]


class Transcript:
    def __init__(self) -> None:
        self.step = 0
        self.failures = 0

    def say(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def call(
        self,
        client: Client,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        expect_denied: bool = False,
        show: Callable[[Any], Any] = lambda r: r,
    ) -> Any:
        self.step += 1
        shown = json.dumps(to_json(args or {}))
        print(f"[{self.step}] host -> agent: {op} {shown[:160]}{'...' if len(shown) > 160 else ''}")
        try:
            result = client.call(op, args)
        except RemoteError as exc:
            if not expect_denied:
                self.failures += 1
            print(f"    agent -> host: {exc.code} ({'as expected' if expect_denied else 'FAILED'})")
            print(f"    {exc.message}")
            if exc.rule:
                print(f"    rule: {exc.rule}")
            return exc
        if expect_denied:
            self.failures += 1
            print("    agent -> host: ok, but a denial was expected (FAILED)")
        text = json.dumps(to_json(show(result)), indent=2, sort_keys=True)
        print("    agent -> host: ok  " + text.replace("\n", "\n    "))
        return result


def missing_for_containers() -> list[str]:
    """What this machine lacks for the storage and container half of the demo."""
    missing = [b for b in ("runc", "mkfs.erofs") if shutil.which(b) is None]
    try:
        assets.find_static_busybox()
    except AgentError as exc:
        missing.append(exc.message)
    if os.geteuid() != 0:
        missing.append("root (loop devices, mounts)")
    return missing


def prepare_inputs(workdir: Path, with_layer: bool) -> tuple[Path, str, Path | None]:
    """Build the layer (if we can), write the policy, and compute the HOST_DATA to launch with."""
    layer: Path | None = None
    hashes = ["00" * 32]
    if with_layer:
        image = assets.build_busybox_layer(workdir)
        layer, hashes = Path(image.path), [image.root_hash]
        print(f"layer image {layer.name}: dm-verity root hash {image.root_hash}")
    policy = workdir / "policy.json"
    policy.write_bytes(assets.demo_policy(hashes))
    host_data = measure(policy.read_bytes()).host_data_hex
    print(f"policy {policy.name}: sha256 = HOST_DATA to launch the VM with = {host_data}")
    return policy, host_data, layer


def _output(client: Client, cid: str, exec_id: str | None = None) -> bytes:
    out = b""
    while True:
        chunk = client.call("read_output", {"container_id": cid, "exec_id": exec_id, "timeout": 30})
        out += chunk["data"]
        if chunk["eof"]:
            return out


def run_conversation(t: Transcript, client: Client, layer: Path | None) -> None:
    t.say("the policy was adopted only because its digest equals the signed HOST_DATA")
    t.call(
        client,
        "status",
        show=lambda s: {
            "policy": s["policy"]["state"],
            "digest": s["policy"]["digest"],
            "snp": s["snp"],
        },
    )
    if layer is None:
        t.say("no layer or runtime on this machine: showing a denial instead")
        t.call(client, "exec_external", {"argv": ["/bin/sh"]}, expect_denied=True)
        return
    t.say("mount the layer: the agent computes its root hash; the policy must list it")
    t.call(client, "mount_layer", {"layer_id": "busybox", "source": str(layer)})
    t.call(client, "mount_scratch", {"container_id": "demo"})
    t.call(client, "mount_overlay", {"container_id": "demo", "layer_ids": ["busybox"]})
    t.say("a host that injects LD_PRELOAD is refused, with the rule and why")
    evil = assets.host_spec(env=[assets.PATH, "LD_PRELOAD=/tmp/evil.so"])
    t.call(client, "create_container", {"container_id": "demo", "spec": evil}, expect_denied=True)
    t.say("the measured container runs under runc")
    t.call(
        client,
        "create_container",
        {"container_id": "demo", "spec": assets.host_spec(), "stdin": True},
    )
    t.call(client, "start_container", {"container_id": "demo"})
    started = t.call(
        client, "exec_process", {"container_id": "demo", "process": assets.exec_process()}
    )
    if isinstance(started, dict):
        print(f"    exec output: {_output(client, 'demo', started['exec_id']).decode()!r}")
        t.call(client, "wait_process", {"container_id": "demo", "exec_id": started["exec_id"]})
    t.say("a shell is not among the policy's exec processes")
    t.call(
        client,
        "exec_process",
        {"container_id": "demo", "process": assets.exec_process(["/bin/sh"])},
        expect_denied=True,
    )
    t.call(client, "write_stdin", {"container_id": "demo", "data": b"demo\n", "close": True})
    print(f"    container output: {_output(client, 'demo').decode()!r}")
    t.call(client, "wait_process", {"container_id": "demo"})
    t.say("tear down: nothing is left mounted")
    for op, args in [
        ("delete_container", {"container_id": "demo"}),
        ("unmount_overlay", {"container_id": "demo"}),
        ("unmount_scratch", {"container_id": "demo"}),
        ("unmount_layer", {"layer_id": "busybox"}),
    ]:
        t.call(client, op, args)
