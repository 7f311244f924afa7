"""Every benchmark, one table: each figure beside its baseline, measured in the same run.

    python benches/run_all.py                      # the real run (1 GiB verity data)
    python benches/run_all.py --quick              # a smoke run in well under a minute
    python benches/run_all.py --update-doc docs/performance.md

Sections: policy decision latency per enforcement point (1/20/200 containers), protocol
throughput and latency (1/16/64 connections, vs a bare asyncio+msgpack server), verity tree
build (vs `veritysetup format` and raw hashlib SHA-256), container create+start+wait through
a real agent (vs runc alone on the same bundle), and the agent's start-up time and RSS.
Needs root, runc, veritysetup, mkfs.erofs and busybox-static for every section to run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_agent_containers
import bench_agent_process
import bench_kata
import bench_lock_scope
import bench_points
import bench_protocol
import bench_server_path
import bench_verity
from _agent import REPO
from _report import Row, machine, markdown_table

START, END = "<!-- results:start -->", "<!-- results:end -->"


def sections(options: argparse.Namespace) -> list[tuple[str, Callable[[], list[Row]]]]:
    quick = options.quick
    return [
        ("policy", lambda: bench_points.rows(1000 if quick else 5000)),
        ("protocol", lambda: bench_protocol.rows(quick)),
        ("server path", lambda: bench_server_path.rows(5000 if quick else 20000)),
        ("verity", lambda: bench_verity.rows(options.verity_size, repeat=1 if quick else 2)),
        ("containers", lambda: bench_agent_containers.rows(5 if quick else 20)),
        ("agent process", lambda: bench_agent_process.rows(2 if quick else 5)),
        ("kata protocol", lambda: bench_kata.rows(5 if quick else 20)),
        ("lock scope", lambda: bench_lock_scope.rows(REPO, 3 if quick else 5, 10.0)),
    ]


def run(options: argparse.Namespace) -> tuple[list[Row], list[str], float]:
    rows: list[Row] = []
    failures: list[str] = []
    began = time.monotonic()
    for name, section in sections(options):
        if options.only and name not in options.only:
            continue
        section_began = time.monotonic()
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            rows += section()
        except Exception as exc:  # a broken section must not hide the others' figures
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            rows.append(Row(name, "FAILED", str(exc)[:80], "", None))
        print(f"    {time.monotonic() - section_began:.0f} s", file=sys.stderr, flush=True)
    return rows, failures, time.monotonic() - began


def report(rows: list[Row], elapsed: float, command: str) -> str:
    info = machine()
    lines = [
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"Python {info['python']}, Linux {info['kernel']}; load average at the end "
        f"{os.getloadavg()[0]:.2f}. Whole run: {elapsed:.0f} s.",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(rows),
    ]
    return "\n".join(lines)


def update_doc(path: Path, text: str) -> None:
    document = path.read_text()
    if START not in document or END not in document:
        raise SystemExit(f"{path} has no {START} ... {END} block to replace")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", document))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--verity-size",
        type=bench_verity.parse_size,
        default=None,
        help="verity data size, e.g. 1G (default: 1G, or 64M with --quick)",
    )
    parser.add_argument("--only", nargs="*", help="run only these sections")
    parser.add_argument("--update-doc", type=Path, help="write the table into this file")
    options = parser.parse_args()
    if options.verity_size is None:
        options.verity_size = (64 if options.quick else 1024) << 20
    # The command that reproduces this table, every option that shaped it included.
    command = "python benches/run_all.py" + (" --quick" if options.quick else "")
    if options.only:
        command += " --only " + " ".join(options.only)
    default_size = (64 if options.quick else 1024) << 20
    if options.verity_size != default_size:
        command += f" --verity-size {options.verity_size >> 20}M"
    rows, failures, elapsed = run(options)
    text = report(rows, elapsed, command)
    print(text)
    if options.update_doc:
        update_doc(options.update_doc, text)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
