"""Start the real agent with a Kata (ttrpc) listener beside its native one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.agent_process import AgentProcess, running_agent, wait_for_socket


@dataclass
class KataAgent:
    process: AgentProcess
    kata_path: str

    @property
    def kata_uri(self) -> str:
        return f"unix://{self.kata_path}"


@contextmanager
def kata_agent(*extra_args: str, **kw: Any) -> Iterator[KataAgent]:
    with tempfile.TemporaryDirectory(prefix="gk-") as sockdir:
        path = str(Path(sockdir) / "kata.sock")
        with running_agent("--kata", f"unix://{path}", *extra_args, **kw) as process:
            wait_for_socket(path, process.process)
            yield KataAgent(process, path)
