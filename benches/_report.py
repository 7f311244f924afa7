"""One results table for every benchmark: each row a figure, its same-run baseline, the ratio."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Row", "machine", "markdown_table", "percentile", "ratio_text"]


@dataclass(frozen=True)
class Row:
    area: str
    measurement: str
    ours: str  # the figure(s) for guestagent, with units
    baseline: str  # what it is compared with, measured in the same run, with its figure
    ratio: float | None  # ours / baseline (for times: >1 means slower; see `better`)
    better: str = ""  # "lower" or "higher": which way the ratio should go


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: Iterable[float]) -> float:
    return statistics.median(list(samples))


def ratio_text(row: Row) -> str:
    if row.ratio is None:
        return ""
    hint = {"lower": " (lower is better)", "higher": " (higher is better)"}.get(row.better, "")
    return f"{row.ratio:.2f}x{hint}"


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| area | measurement | guestagent | baseline (same run) | ratio |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.area} | {row.measurement} | {row.ours} | {row.baseline} | {ratio_text(row)} |"
        )
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(info.readline().split()[1])
            memory = f"{kib / (1 << 20):.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": memory,
        "python": sys.version.split()[0],
        "kernel": platform.release(),
    }
