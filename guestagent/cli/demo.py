"""`guestagent demo`: the agent end to end on its embedded defaults, as a transcript.

It starts a real agent daemon on a private unix socket and drives it with the host client,
printing each request and what came back, including a denial and its explanation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from guestagent.cli import EXIT_FAILED, EXIT_OK
from guestagent.cli.ctl import to_json
from guestagent.client import Client, RemoteError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the agent end to end on its embedded defaults and print a transcript"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.set_defaults(func=run)


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
        expect_denied: bool = False,
        show: Callable[[Any], Any] = lambda r: r,
    ) -> Any:
        self.step += 1
        print(f"[{self.step}] host -> agent: {op} {json.dumps(to_json(args or {}))[:200]}")
        try:
            result = client.call(op, args)
        except RemoteError as exc:
            marker = "denied as expected" if expect_denied else "FAILED"
            if not expect_denied:
                self.failures += 1
            print(f"    agent -> host: error {exc.code} ({marker})\n    {exc.message}")
            if exc.rule:
                print(f"    rule: {exc.rule}")
            return exc
        if expect_denied:
            self.failures += 1
            print("    agent -> host: ok, but a denial was expected (FAILED)")
        text = json.dumps(to_json(show(result)), indent=2, sort_keys=True)
        print("    agent -> host: ok\n    " + text.replace("\n", "\n    "))
        return result


@contextlib.contextmanager
def agent_daemon(workdir: Path, *args: str) -> Iterator[str]:
    socket_path = workdir / "agent.sock"
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
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
            *args,
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the agent exited with {process.returncode}; see {log.name}")
            with socket.socket(socket.AF_UNIX) as probe:
                if probe.connect_ex(str(socket_path)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the agent did not start within 30 s")
            time.sleep(0.05)
        yield f"unix://{socket_path}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="guestagent-demo-"))
    transcript = Transcript()
    try:
        transcript.say(f"starting the agent (work directory {workdir})")
        with agent_daemon(workdir) as uri, Client.connect(uri, hello=False) as client:
            transcript.call(client, "status", expect_denied=True)
            transcript.call(client, "hello", {"protocol": 1, "client": "demo"})
            transcript.call(client, "ping", {"payload": b"hello guest"})
            transcript.call(client, "status")
        print(f"\nagent log: {workdir / 'agent.log'}" if args.keep else "")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"demo finished: {transcript.step} requests, {transcript.failures} unexpected results")
    return EXIT_OK if transcript.failures == 0 else EXIT_FAILED
