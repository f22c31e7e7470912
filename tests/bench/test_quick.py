"""Every benchmark's ``--quick`` variant runs and prints its figures: a smoke test
that the benchmark works, not of its timing (the figures are in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel.lab import require_root

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    result: dict[str, object] = json.loads(line.removeprefix("BENCH "))
    assert result["benchmark"] == name and result["rows"]
    return result


@pytest.mark.broker
def test_api_throughput_quick() -> None:
    result = run_benchmark("api_throughput")
    rates = {r["what"]: r["value"] for r in result["rows"]}  # type: ignore[attr-defined]
    # the benchmark itself checks that every create answered 201 and all are listed
    for what in ("compartment creates, no wait", "endpoint creates, no wait"):
        assert "/s (100 in " in rates[what], rates


@pytest.mark.kernel
def test_convergence_quick() -> None:
    require_root()
    result = run_benchmark("convergence")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows["endpoint create → applied on every host (wall)"]["n"] == 10
    assert rows["endpoint create → first ping from another host"]["n"] == 10


@pytest.mark.kernel
def test_restart_quick() -> None:
    require_root()
    result = run_benchmark("restart")
    rows = {r["what"].split(": ")[-1] for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows == {
        "packets lost",
        "kill → new endpoint applied",
        "broker back → all hosts converged",
    }
    assert len(result["rows"]) == 8  # type: ignore[arg-type]


@pytest.mark.kernel
def test_dataplane_quick() -> None:
    require_root()
    result = run_benchmark("dataplane")
    rows = {r["what"]: r["value"] for r in result["rows"]}  # type: ignore[attr-defined]
    # a dataplane that works at all: both directions measured, no MTU black hole
    assert rows["overlay TCP, compartment ↔ compartment across hosts"].endswith("Gbit/s")
    assert rows["don't-fragment ping at the overlay MTU"] == "passes"
    assert rows["one byte over: refused at the sender"] == "yes"


@pytest.mark.kernel
def test_kernel_scale_quick() -> None:
    require_root()
    result = run_benchmark("kernel_scale")
    rows = {r["what"]: r["value"] for r in result["rows"]}  # type: ignore[attr-defined]
    # a restarted agent adopts what it programmed: no kernel action
    assert rows["restart adoption: kernel actions"] == "0"
    assert rows["cold: agent start → in sync"].endswith(" ms")


@pytest.mark.broker
def test_fanout_quick(tmp_path: Path) -> None:
    png = tmp_path / "fanout.png"
    result = run_benchmark("fanout", "--plot", str(png))
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    # the benchmark itself checks that each change converged on every simulated host
    assert rows["N=4: change → all applied"]["n"] == 5
    assert rows["N=8: change → all applied"]["n"] == 5
    assert "s" in rows["N=8: cold start → all in sync"]["value"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_agent_pass_quick() -> None:
    result = run_benchmark("agent_pass")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    # the benchmark itself checks each pass's actions (every entry cold, 4 per change)
    assert rows["cold: snapshot folded in + first pass"]["n"] == 2
    assert rows["one change: folded in + pass on the view"]["n"] == 20
