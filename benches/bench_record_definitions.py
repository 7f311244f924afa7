"""What defining the package's value classes costs an agent started to ready, in-process.

A fresh interpreter per checkout times every class decorator the agent's start runs (the
dataclasses of an older checkout, the records of this one: `guestagent/records.py`, with
the methods records make at their first use, when that comes before ready), from
the serve command line to listening with the simulated SNP backend and the bench policy
adopted, and prints the count, the total and the costliest classes. `--compare DIR` runs
another checkout (say `git archive` of main, unpacked in DIR) in turns with this one: a
before/after in one run, each the median of `--runs` fresh starts.

    python benches/bench_record_definitions.py [--runs 5] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _agent import REPO, build_assets, python_env

# Runs in the child, from the checkout under test: the hooks go in before any of its
# modules is imported, then the agent is started to ready and stopped.
CHILD = r"""
import asyncio, json, sys, time
timed, later = [], []

def timing(build, into):
    def run(cls, *args, **kwargs):
        began = time.perf_counter()
        made = build(cls, *args, **kwargs)
        if cls.__module__.startswith("guestagent"):
            into.append((f"{cls.__module__}.{cls.__qualname__}", time.perf_counter() - began))
        return made
    return run

began = time.perf_counter()
import dataclasses
imported = time.perf_counter() - began
dataclasses._process_class = timing(dataclasses._process_class, timed)
try:
    import guestagent.records as records
    import guestagent.record_code as record_code
    records._build = timing(records._build, timed)
    # What records make at first use instead: counted too, when it happens before ready.
    record_code.make_init = timing(record_code.make_init, later)
    records.make_eq = timing(records.make_eq, later)
    records.make_hash = timing(records.make_hash, later)
except ImportError:  # a checkout from before records
    pass
from guestagent.cli import build_parser
from guestagent.cli.serve import config_from_args
from guestagent.server.agent import Agent

async def start(argv):
    agent = Agent(config_from_args(build_parser("serve").parse_args(argv)))
    try:
        await agent.start()
        assert agent.gate.describe()["state"] == "enforcing"
    finally:
        await agent.shutdown()
        await agent.release()

asyncio.run(start(sys.argv[1:]))
print(json.dumps({"classes": timed, "later": later, "import_dataclasses": imported}))
"""


def one_start(repo: Path, work: Path, name: str, assets) -> dict:
    argv = [
        "serve", "--listen", f"unix://{work / name}.sock", "--state-dir", str(work / name),
        "--snp", "sim", "--sim-state", str(assets.sim_state), "--sim-host-data",
        assets.host_data, "--policy", str(assets.policy), "--layer-dir", str(assets.layer_dir),
        "--log-level", "warning",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        cwd=repo,
        env=python_env(work / f"pycache-{repo.name}"),
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def summary(label: str, starts: list[dict]) -> dict:
    totals = [sum(ms for _, ms in start["classes"]) * 1000 for start in starts]
    later = [sum(ms for _, ms in start.get("later", ())) * 1000 for start in starts]
    per_class: dict[str, list[float]] = {}
    for start in starts:
        for name, seconds in start["classes"]:
            per_class.setdefault(name, []).append(seconds * 1000)
    top = sorted(((statistics.median(v), k) for k, v in per_class.items()), reverse=True)
    return {
        "label": label,
        "count": len(starts[0]["classes"]),
        "total_ms": statistics.median(totals),
        "later_ms": statistics.median(later),
        "later_count": len(starts[0].get("later", ())),
        "all_ms": statistics.median(t + lt for t, lt in zip(totals, later, strict=True)),
        "import_dataclasses_ms": statistics.median(s["import_dataclasses"] for s in starts) * 1e3,
        "top": top[:6],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another checkout, timed in turns")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ga-bench-records-"))
    try:
        checkouts = {"this checkout": REPO}
        if args.compare:
            checkouts["--compare"] = args.compare.resolve()
        assets = {
            label: build_assets(work / f"assets{i}", hostname=label == "this checkout")
            for i, label in enumerate(checkouts)
        }
        for label, repo in checkouts.items():  # untimed: keys and bytecode caches
            one_start(repo, work, "first", assets[label])
        starts: dict[str, list[dict]] = {label: [] for label in checkouts}
        for i in range(args.runs):
            for label, repo in checkouts.items():
                starts[label].append(one_start(repo, work, f"s{i}", assets[label]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = [summary(label, runs) for label, runs in starts.items()]
    for result in results:
        print(
            f"{result['label']}: {result['count']} classes defined before ready, "
            f"{result['total_ms']:.1f} ms in their decorators, {result['later_ms']:.1f} ms in "
            f"{result['later_count']} methods made at first use, {result['all_ms']:.1f} ms in "
            f"all (medians of {args.runs}); import dataclasses "
            f"{result['import_dataclasses_ms']:.1f} ms"
        )
        for ms, name in result["top"]:
            print(f"    {ms:6.2f} ms  {name}")
    if len(results) == 2 and results[1]["all_ms"]:
        print(f"ratio this/--compare (in all): {results[0]['all_ms'] / results[1]['all_ms']:.3f}")


if __name__ == "__main__":
    main()
