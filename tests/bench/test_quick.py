"""Every benchmark's ``--quick`` variant runs and prints its figures: a smoke test
that the benchmark works, not of its timing (the figures are in the README)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from agents.kernel import netns
from lab.records import start_time
from tests.kernel.lab import require_root

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str, timeout: float = 300) -> dict[str, object]:
    """Run ``benchmarks.NAME --quick``. Past ``timeout`` it gets SIGTERM, as ``timeout``
    or a CI runner would send: it brings its lab down and exits (SIGKILL only if it
    does not within a minute), and the test fails."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"benchmarks.{name} ran past {timeout} s: {stdout[-2000:]}{stderr[-2000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("BENCH ")]
    result: dict[str, object] = json.loads(line.removeprefix("BENCH "))
    assert result["benchmark"] == name and result["rows"]
    return result


def test_cni_start_quick() -> None:
    result = run_benchmark("cni_start")
    whats = [r["what"] for r in result["rows"]]  # type: ignore[attr-defined]
    assert "launcher (-IS) ADD" in whats and "console script plexus-cni VERSION" in whats


@pytest.mark.kernel
def test_cni_quick() -> None:
    require_root()
    result = run_benchmark("cni")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows["ADD → result (agent plumbing included)"]["n"] == 10
    assert rows["DEL → done"]["n"] == 10


@pytest.mark.kernel
def test_acl_quick() -> None:
    require_root()
    result = run_benchmark("acl")
    whats = {r["what"] for r in result["rows"]}  # type: ignore[attr-defined]
    assert "shared: compile + replace (cold)" in whats
    assert "per endpoint: a label change in place (2 sets)" in whats


@pytest.mark.kernel
def test_acl_convergence_quick() -> None:
    require_root()
    result = run_benchmark("acl_convergence")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows["label change → every host applied (sets)"]["n"] == 6


@pytest.mark.kernel
def test_docker_plugin_quick() -> None:
    require_root()
    result = run_benchmark("docker_plugin")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows["docker run: RequestAddress … ProgramExternalConnectivity"]["n"] == 10
    assert rows["docker rm: RevokeExternalConnectivity … ReleaseAddress"]["n"] == 10


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


@pytest.mark.kernel
def test_kernel_pass_quick() -> None:
    require_root()
    result = run_benchmark("kernel_pass")
    rows = {r["what"]: r["value"] for r in result["rows"]}  # type: ignore[attr-defined]
    assert "errors" not in rows["cold pass"] and "errors" not in rows["teardown pass"]
    runs = {
        "  namespaces, one thread (AddNamespace)",
        "  veth adds, one thread (AddVeth)",
        "  default routes, one thread (SetRoute)",
        "  FDB and neighbour batch",
    }
    assert runs <= rows.keys()
    # none of them the slow way, one at a time (:mod:`agents.kernel.runs`)
    assert not {"  AddNamespace", "  AddVeth", "  SetRoute"} & rows.keys()


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


@pytest.mark.broker
def test_fanout_quick_behind_relays(tmp_path: Path) -> None:
    """The agents on two relays (Mosquitto bridges of the root broker the controller
    publishes on): each change converges through them, and no session is lost."""
    result = run_benchmark("fanout", "--relays", "2", "--plot", str(tmp_path / "f.png"))
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    assert rows["N=8 behind 2 relays: change → all applied"]["n"] == 5
    again = rows["N=8 behind 2 relays: broker sessions made again (agents / controller)"]
    assert again["value"] == "0 / 0"
    (cpu,) = (r for w, r in rows.items() if w.startswith("N=8 behind 2 relays: CPU during ch"))
    assert "relays" in cpu["value"]  # the relays' own CPU is a figure of its own


def test_store_writes_quick() -> None:
    result = run_benchmark("store_writes")
    whats = [r["what"] for r in result["rows"]]  # type: ignore[attr-defined]
    assert whats == [
        "SQLite (WAL, synchronous=normal)",
        "PostgreSQL, one controller",
        "PostgreSQL, two controllers taking turns",
    ]


def test_agent_pass_quick() -> None:
    result = run_benchmark("agent_pass")
    rows = {r["what"]: r for r in result["rows"]}  # type: ignore[attr-defined]
    # the benchmark itself checks each pass's actions (every entry cold, 4 per change)
    assert rows["cold: snapshot folded in + first pass"]["n"] == 2
    assert rows["one change: folded in + pass on the view"]["n"] == 20


@pytest.mark.kernel
def test_a_benchmark_stopped_by_sigterm_leaves_no_lab_behind(tmp_path: Path) -> None:
    """``timeout`` (or a CI runner) stops a benchmark with SIGTERM while its lab runs:
    the benchmark brings the lab down on its way out. Everything it made is named in
    its records (``PLEXUS_RECORDS``); none of it is left."""
    require_root()
    records = tmp_path / "records"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.convergence", "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PLEXUS_RECORDS": str(records)},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the lab is up once its agents are started
            if "lab: agents" in line:
                break
        else:
            pytest.fail("the benchmark ended before its lab was up")
        proc.terminate()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    made = [line.split() for line in records.read_text().splitlines()]
    kinds = {kind for kind, *_ in made}
    assert {"lab", "pid", "netns", "netns-prefix", "link"} <= kinds
    left_ns = [
        ns
        for ns in netns.listnetns()
        for kind, value, *_ in made
        if (kind == "netns" and ns == value) or (kind == "netns-prefix" and ns.startswith(value))
    ]
    assert left_ns == []
    left_pids = [
        int(pid) for kind, pid, *rest in made if kind == "pid" and start_time(int(pid)) == rest[0]
    ]
    assert left_pids == []
    with IPRoute() as ipr:
        assert [v for kind, v, *_ in made if kind == "link" and ipr.link_lookup(ifname=v)] == []
    assert not any(Path(v).exists() for kind, v, *_ in made if kind == "lab")
