"""Collection held while a process starts (guestagent/startgc.py), in fresh interpreters:
the state is per process, and the test runner's own collector must not be touched."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_hold_and_resume(tmp_path: Path) -> None:
    out = run_python(
        """
        import gc
        from guestagent import startgc
        startgc.resume()                      # never held: nothing happens
        print(gc.isenabled(), gc.get_freeze_count() == 0)
        startgc.hold()
        print(gc.isenabled())
        kept = [[] for _ in range(1000)]      # alive at resume: frozen
        startgc.resume()
        print(gc.isenabled(), gc.get_freeze_count() >= 1000)
        gc.disable()
        startgc.hold()                        # already off (someone else's): not ours to resume
        startgc.resume()
        print(gc.isenabled())
        """,
        tmp_path,
    )
    assert out == ["True", "True", "False", "True", "True", "False"]


def test_the_agent_resumes_collection_once_ready(tmp_path: Path) -> None:
    out = run_python(
        """
        import asyncio, gc, sys
        from guestagent import startgc
        startgc.hold()
        from guestagent.server.agent import Agent, AgentConfig

        async def main():
            agent = Agent(AgentConfig(
                listen=[f"unix://{sys.argv[1]}/a.sock"], insecure_allow_all=True, snp="none",
                state_dir=f"{sys.argv[1]}/state", manage_containers=False))
            serving = asyncio.create_task(agent.serve())
            while not agent.listeners:
                print("starting", gc.isenabled()) if not hasattr(main, "seen") else None
                main.seen = True
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # past the listeners: start() has finished
            print("ready", gc.isenabled(), gc.get_freeze_count() > 0)
            agent.request_shutdown()
            await serving

        asyncio.run(main())
        """,
        tmp_path,
    )
    assert out == ["starting", "False", "ready", "True", "True"]


def test_other_commands_run_with_collection(tmp_path: Path) -> None:
    out = run_python(
        """
        import gc
        from guestagent import startgc
        startgc.hold()
        from guestagent.cli import main
        code = main(["policy", "hash", "examples/policies/busybox.json"])
        print(code, gc.isenabled())
        """,
        tmp_path,
    )
    assert out[-2:] == ["0", "True"]
