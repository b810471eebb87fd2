"""Shared by the benchmarks: variants run back to back in alternating order, the CPU's name."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable


def run_alternating(variants: dict[str, Callable[[], Any]],
                    rounds: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every variant once per round, reversing the order every other round.

    Alternating the order spreads a load that drifts on a shared machine over all variants.

    Returns
    -------
    (seconds per round for each variant, each variant's last return value).
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    values: dict[str, Any] = {}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            start = time.perf_counter()
            values[name] = variants[name]()
            times[name].append(time.perf_counter() - start)
    return times, values


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, as lscpu shows it), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
