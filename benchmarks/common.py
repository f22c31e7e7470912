"""What every benchmark shares: percentiles, the machine, the table and the JSON line."""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from proto.settings import GC_THRESHOLDS
from proto.signals import exit_on_signals

console = Console(width=140)
T = TypeVar("T")


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the method of the OVN peer's RESULTS.md)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99, max and mean of ``samples`` (ms in, ms out)."""
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 50), 3),
        "p90": round(percentile(samples, 90), 3),
        "p99": round(percentile(samples, 99), 3),
        "max": round(max(samples), 3) if samples else math.nan,
        "mean": round(sum(samples) / len(samples), 3) if samples else math.nan,
    }


def machine() -> dict[str, Any]:
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {
        "cores": os.cpu_count(),
        "mem_mib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return math.nan


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gc_flag(ap: argparse.ArgumentParser) -> None:
    """``--gc-default``, for a benchmark that runs a daemon's code in its own process:
    see :func:`collect_as_daemons`."""
    ap.add_argument("--gc-default", action="store_true", help="Python's GC thresholds")


def collect_as_daemons(args: argparse.Namespace) -> dict[str, Any]:
    """The garbage collector's thresholds as the daemons set them
    (:data:`proto.settings.GC_THRESHOLDS`), unless ``--gc-default`` (:func:`gc_flag`);
    the thresholds in effect, for the BENCH line."""
    if not args.gc_default:
        gc.set_threshold(*GC_THRESHOLDS)
    return {"gc": list(gc.get_threshold())}


def report(
    name: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    targets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Print ``rows`` (each: ``what`` plus summary fields or a ``value``) as a table and
    the whole result as one JSON line; returns the result."""
    table = Table(title=f"benchmark: {name}", show_edge=False, header_style="bold")
    cols = ["what", "n", "p50", "p90", "p99", "max", "mean", "value", "target"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("what", "value", "target") else "right")
    for r in rows:
        cells = [str(r.get(c, "")) for c in cols[:-1]]
        cells.append((targets or {}).get(r["what"], ""))
        table.add_row(*cells)
    console.print(table)
    result = {
        "benchmark": name,
        "machine": machine(),
        "commit": git_commit(),
        "rows": rows,
        **(extra or {}),
    }
    print("BENCH " + json.dumps(result, sort_keys=True), flush=True)
    return result


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def gone(pid: int, within: float = 10.0) -> None:
    """Until process ``pid`` has stopped (a zombie counts as stopped)."""
    from lab import procs

    deadline = time.monotonic() + within
    while procs.alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop")
        time.sleep(0.01)


def lab_run(hosts: int, prefix: str, measure: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Bring a ``plexus lab`` of ``hosts`` up in a temporary directory (root), run
    ``measure(spec)`` and bring the lab down again, also on failure or SIGTERM."""
    import asyncio
    import sys
    import tempfile
    from pathlib import Path

    from lab import core
    from lab.spec import machine_lock

    if os.geteuid() != 0:
        sys.exit("this benchmark builds a lab of namespaces: run it as root")
    exit_on_signals()
    directory = Path(tempfile.mkdtemp(prefix="plexus-bench-"))
    try:
        with machine_lock():
            spec = core.plan(directory / "lab", hosts, f"{prefix}{os.getpid() % 10000}x")
            core.up(spec, lambda s: console.print(f"[dim]lab: {s}[/dim]"))
        return asyncio.run(measure(spec))
    finally:
        core.down(directory / "lab")
        directory.rmdir()


def stop_all(procs: Sequence[subprocess.Popen[Any]], grace: float = 10.0) -> None:
    """SIGTERM to every process, then each waited for ``grace`` seconds (SIGKILL after)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
