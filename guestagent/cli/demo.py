"""`guestagent demo`: the agent end to end on its embedded defaults, as a transcript.

It builds a busybox layer and a policy for it, starts a real agent daemon with the simulated
SEV-SNP device launched with HOST_DATA = the policy's digest, on a private unix socket, and
drives it with the host client: adoption, verified layers, a runc container, exec, denials.
Where the machine lacks runc, mkfs.erofs, busybox-static or root, it says so and shows the
part it can.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from guestagent.cli import EXIT_FAILED, EXIT_OK
from guestagent.client import Client
from guestagent.demo.scenario import (
    Transcript,
    missing_for_containers,
    prepare_inputs,
    run_conversation,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the agent end to end on its embedded defaults and print a transcript"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and log")
    parser.set_defaults(func=run)


@contextlib.contextmanager
def agent_daemon(workdir: Path, *args: str) -> Iterator[str]:
    socket_path = workdir / "agent.sock"
    log_path = workdir / "agent.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guestagent",
                "serve",
                "--listen",
                f"unix://{socket_path}",
                "--state-dir",
                str(workdir / "state"),
                "--log-level",
                "warning",
                *args,
            ],
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the agent exited: {log_path.read_text()[-2000:]}")
                with socket.socket(socket.AF_UNIX) as probe:
                    if probe.connect_ex(str(socket_path)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent did not start within 60 s")
                time.sleep(0.05)
            yield f"unix://{socket_path}"
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(f"agent exited with {process.returncode}")


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="guestagent-demo-"))
    transcript = Transcript()
    try:
        missing = missing_for_containers()
        if missing:
            print("storage and container steps skipped; this machine lacks: " + "; ".join(missing))
        transcript.say("inputs: a busybox layer image and the policy a relying party audits")
        policy, host_data, layer = prepare_inputs(workdir, with_layer=not missing)
        sim_state = workdir / "sim"
        sim_state.mkdir(mode=0o700)
        transcript.say("start the agent: SIMULATED SEV-SNP launched with that HOST_DATA")
        agent_args = [
            "--snp",
            "sim",
            "--sim-state",
            str(sim_state),
            "--sim-host-data",
            host_data,
            "--policy",
            str(policy),
            "--layer-dir",
            str(workdir),
        ]
        with (
            agent_daemon(workdir, *agent_args) as uri,
            Client.connect(uri, hello=False) as client,
        ):
            transcript.call(client, "status", expect_denied=True)
            transcript.call(
                client,
                "hello",
                {"protocol": 1, "client": "demo"},
                show=lambda r: {"protocol": r["protocol"], "agent": r["agent"]},
            )
            run_conversation(transcript, client, layer)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"demo finished: {transcript.step} requests, {transcript.failures} unexpected results")
    return EXIT_OK if transcript.failures == 0 else EXIT_FAILED
