"""Fan-out at scale with simulated hosts: a real Mosquitto (credentials and ACLs) and a
real controller process; N agents — the real agent code (:class:`agents.agent.Agent`,
:class:`agents.daemon.AgentDaemon`, one MQTT session each, its own credential) on the
in-memory kernel driver — many per process, in several processes. One overlay network
holds E endpoints (default 20,000), each in a compartment of its own, spread over the N
hosts: every agent holds the whole table (E FDB + E neighbour entries).

For each N (default 100, 300, 1,000):

- cold start: the endpoints exist, the agents start → every host in sync (the
  controller's ``/v1/status``, polled every 250 ms);
- one endpoint change → every host applied: an endpoint created with ``wait=true``
  (the controller answers once all N hosts report the new table generation and the
  owner its compartment), C times one after another;
- controller and broker RSS and CPU, and the simulators' RSS.

The agents of one process share decoded messages (models and rows are frozen): E records
decoded once per process, not once per agent; their periodic full passes run every
300 s instead of 30 s (each costs a real host ~15 ms of its own CPU; here N of them
would land on the same 2 cores). Their collector runs as the daemon's, and what a
process holds is frozen out of its sight every second (:func:`out_of_sight`): in
production each agent has a heap of its own. Everything runs on this machine's cores:
at N = 1,000 the simulated agents' own passes are most of the CPU a change costs.
Figures grow with N in a table and in a PNG plot (``--plot``).

    .venv/bin/python -m benchmarks.fanout [--hosts 100,300,1000] [--endpoints 20000]
        [--changes 100] [--workers 4] [--relays K] [--plot benchmarks/fanout.png] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import ipaddress
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import proto
from agents.agent import Agent
from agents.daemon import AgentDaemon
from agents.kernel.memory import MemoryKernel
from broker import identities
from cli.client import AsyncClient
from proto import logs, topics
from proto.failover import Brokers
from proto.mqtt import BrokerURL, cancel_and_wait, client, connector
from proto.settings import GC_THRESHOLDS
from proto.signals import exit_on_signals

from . import relaylab
from .api_throughput import controller_with_broker
from .common import cpu_seconds, percentile, report, rss_mib, stop_all, summary

NET = "fo"
RESYNC = 300.0
SUBNET = ipaddress.IPv4Network("10.64.0.0/14")
TARGETS = {
    "N=1000: change → all applied": "p99 ≤ 1 s",
    "N=1000: cold start → all in sync": "≤ 60 s",
    "N=1000: controller RSS": "≤ 300 MB",
}


def host(i: int) -> str:
    return f"f{i}"


def vtep(i: int) -> str:
    """A VTEP address per simulated host (the in-memory kernel never sends to it)."""
    return f"198.19.{i // 250}.{i % 250 + 1}"


# -- the simulator process -------------------------------------------------------------


def shared_decoder(size: int = 64) -> dict[str, Any]:
    """An agent's decoders (``proto.decode``, and ``proto.decode_rows`` of its tables)
    with the last few frames' models and rows shared by every agent of this process
    (each receives the same frames; models and rows are frozen; a frame that fails to
    decode raises each time, as lru_cache keeps no exceptions): ``Agent(...,
    **shared_decoder())``."""
    return {
        "decode": functools.lru_cache(maxsize=size)(proto.decode),
        "decode_rows": functools.lru_cache(maxsize=size)(proto.decode_rows),
    }


async def simulate(first: int, count: int, broker: str, ids: Path) -> None:
    """Agents ``first`` … on the brokers ``broker`` (comma-separated: each agent starts
    on a random one, as a real agent given several)."""
    decoder = shared_decoder()
    bases = [BrokerURL.parse(b) for b in broker.split(",")]
    daemons = []
    for i in range(first, first + count):
        agent = Agent(host(i), MemoryKernel(keep=0), vtep(i), **decoder)
        # periodic full passes every 300 s, not 30 s: on real hosts each costs its own
        # host ~15 ms a period; here N of them would share 2 cores at the same moments
        urls = [b.with_credentials(ids / host(i)) for b in bases]
        # keepalive 120 s, not 10: a process's hundreds of agents share one event loop,
        # where a round of their cold passes takes longer than 1.5 x 10 s, and the broker
        # dropped their sessions (each then synchronised again); a real host's pass is
        # the only work on its agent's loop
        ring = Brokers.of((str(u), connector(u, keepalive=120, timeout=60)) for u in urls)
        daemons.append(AgentDaemon(agent, ring, RESYNC))
    tasks = [asyncio.create_task(d.session()) for d in daemons]
    tasks += [asyncio.create_task(d.reconciler()) for d in daemons]
    tasks.append(asyncio.create_task(out_of_sight()))
    try:
        await asyncio.Event().wait()
    finally:
        for t in tasks:
            await cancel_and_wait(t)


async def out_of_sight(every: float = 1.0) -> None:
    """What the process holds moved out of the collector's sight (``gc.freeze``), every
    ``every`` seconds. Hundreds of agents share this heap, where in production each has
    its own: each full collection would otherwise scan every agent's tables (20,000
    endpoints each), not the one agent's a real host's collector scans. Objects frozen
    are still freed when no longer referenced (cycles among them are not, which a
    benchmark's process can afford)."""
    while True:
        await asyncio.sleep(every)
        gc.freeze()


def worker_main(args: argparse.Namespace) -> None:
    exit_on_signals()
    # the collector as the agent's daemon has it (in production each agent has a heap
    # of its own; here hundreds share one)
    gc.set_threshold(*GC_THRESHOLDS)
    logs.configure("warning", "json")
    asyncio.run(simulate(args.first, args.count, args.broker, Path(args.identities)))


# -- the driver ------------------------------------------------------------------------


async def report_online(broker: BrokerURL, ids: Path, n: int) -> None:
    """Each host known and online with its VTEP, as its agent would report it."""
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        status = proto.HostStatus(host=host(i), state="online", version="sim", vtep=vtep(i))
        async with sem, client(broker.with_credentials(ids / host(i)), host(i)) as mqtt:
            await mqtt.publish(topics.host_status(host(i)), proto.encode(status), 1, True)

    await asyncio.gather(*(one(i) for i in range(n)))


async def populate(url: str, n: int, endpoints: int, changes: int) -> dict[str, float]:
    """The network, then its compartments in one ``POST /v1/batch`` and their endpoints
    in another; each call's wall time (s)."""
    async with AsyncClient(url, timeout=600) as http:
        for _ in range(1000):
            hosts = await http.get("/v1/hosts")
            if sum(h["state"] == "online" for h in hosts) >= n:
                break
            await asyncio.sleep(0.05)
        await http.post("/v1/networks", {"id": NET, "subnet": str(SUBNET), "vni": 5000})
        comps = [
            {"op": "create", "kind": "compartment", "body": {"id": f"c{i}", "host": host(i % n)}}
            for i in range(endpoints + changes)
        ]
        eps = [
            {"op": "create", "kind": "endpoint", "body": {"network": NET, "compartment": f"c{i}"}}
            for i in range(endpoints)
        ]
        took = {}
        for what, ops in (("compartments", comps), ("endpoints", eps)):
            t = time.monotonic()
            await http.post("/v1/batch", {"ops": ops})
            took[what] = time.monotonic() - t
        return took


async def all_in_sync(url: str, n: int, within: float) -> float:
    start = time.monotonic()
    async with AsyncClient(url, timeout=60) as http:
        while time.monotonic() - start < within:
            hosts = (await http.get("/v1/status"))["hosts"]
            if sum(h["state"] == "online" and h["in_sync"] for h in hosts) >= n:
                return time.monotonic() - start
            await asyncio.sleep(0.25)
    raise TimeoutError(f"not all {n} hosts in sync within {within} s")


def published(url: str) -> dict[str, float]:
    """The payload bytes the controller has published so far, by topic kind (its
    ``plexus_publish_bytes_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        s.labels["topic_kind"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "plexus_publish_bytes"
        for s in family.samples
        if s.name == "plexus_publish_bytes_total"
    }


async def changes_applied(url: str, endpoints: int, changes: int) -> list[float]:
    """Each change: one endpoint created with wait=true → all hosts applied (ms)."""
    out = []
    async with AsyncClient(url, timeout=60) as http:
        for k in range(changes):
            body = {"network": NET, "compartment": f"c{endpoints + k}"}
            t = time.perf_counter()
            created = await http.post("/v1/endpoints", body, wait=60)
            took = (time.perf_counter() - t) * 1000
            conv = created["convergence"]
            if not conv["converged"]:
                raise RuntimeError(f"change {k} did not converge: {conv}")
            out.append(took)
    return out


def start_workers(n: int, workers: int, broker: str, ids: Path, log: Path) -> list[Any]:
    procs = []
    per = -(-n // workers)
    with open(log, "ab") as out:
        for first in range(0, n, per):
            cmd = [sys.executable, "-m", "benchmarks.fanout", "--worker"]
            cmd += ["--first", str(first), "--count", str(min(per, n - first))]
            cmd += ["--broker", broker, "--identities", str(ids)]
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=out))
    return procs


def sessions(log: Path, n: int) -> dict[str, int]:
    """Broker sessions made beyond the first of each client (the broker's log): a
    session lost means a client synchronised again."""
    made = {"agents": -2 * n, "controller": -1}  # report_online made one each too
    for line in log.read_bytes().splitlines():
        if b"New client connected" in line and b"@relay-" not in line:
            made["controller" if line.endswith(b"'@controller').") else "agents"] += 1
    return made


def one_n(n: int, endpoints: int, changes: int, workers: int, k: int = 0) -> dict[str, Any]:
    """One N; with ``k`` relays the agents are on them (each given all k), not on the
    root broker the controller publishes on."""
    print(f"fanout: N={n}: broker, {k} relays, controller, {endpoints} endpoints …", flush=True)
    with tempfile.TemporaryDirectory(prefix="plexus-fanout-") as d:
        work = Path(d)
        hosts = [host(i) for i in range(n)]
        with (
            controller_with_broker(work, hosts) as svc,
            relaylab.running(work, work / "broker", svc.broker, k) as relays,
        ):
            ids = identities.BrokerDir(work / "broker").identities
            asyncio.run(report_online(svc.broker, ids, n))
            loaded = asyncio.run(populate(svc.url, n, endpoints, changes))
            created = sum(loaded.values())
            print(
                f"fanout: N={n}: {endpoints + changes} compartments in one batch "
                f"{loaded['compartments']:.1f} s, {endpoints} endpoints in one batch "
                f"{loaded['endpoints']:.1f} s; agents start …",
                flush=True,
            )
            brokers = ",".join(str(r.url) for r in relays) or str(svc.broker)
            procs = start_workers(n, workers, brokers, ids, work / "workers.log")

            def cpu() -> dict[str, float]:
                return {
                    "controller": cpu_seconds(svc.pid),
                    "broker": cpu_seconds(svc.broker_pid),
                    **({"relays": sum(cpu_seconds(r.pid) for r in relays)} if relays else {}),
                    "simulators": sum(cpu_seconds(p.pid) for p in procs),
                }

            cpu0 = cpu()
            try:
                cold = asyncio.run(all_in_sync(svc.url, n, 600))
                mid = cpu()
                sim_rss = sum(rss_mib(p.pid) for p in procs)
                print(f"fanout: N={n}: in sync after {cold:.1f} s; {changes} changes …", flush=True)
                sent = published(svc.url)
                t = time.monotonic()
                lat = asyncio.run(changes_applied(svc.url, endpoints, changes))
                wall = time.monotonic() - t
                end = cpu()
                sent = {k: v - sent.get(k, 0.0) for k, v in published(svc.url).items()}
                per_change = {k: round(v / changes / 1e3, 1) for k, v in sent.items() if v}
                result = {
                    "n": n,
                    "created_s": created,
                    "loaded_s": {k: round(v, 2) for k, v in loaded.items()},
                    "cold_s": cold,
                    "change_ms": lat,
                    "controller_rss_mib": rss_mib(svc.pid),
                    "broker_rss_mib": rss_mib(svc.broker_pid),
                    "relays": k,
                    "sim_rss_mib": round(sim_rss, 1),
                    "cold_cpu_s": {k: round(mid[k] - cpu0[k], 2) for k in mid},
                    "changes_cpu_s": {k: round(end[k] - mid[k], 2) for k in end},
                    "changes_wall_s": round(wall, 1),
                    "changes_sent_kb": per_change,
                    "sessions": sessions(work / "processes.log", n),
                }
            finally:
                stop_all(procs, 5)
    return result


def plot(results: list[dict[str, Any]], path: Path, endpoints: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot(ns, [r["cold_s"] for r in results], "o-", label="cold start → all in sync")
    ax[0].axhline(60, color="grey", ls=":", label="target at N=1000")
    ax[0].set_ylabel("seconds")
    p50 = [percentile(r["change_ms"], 50) for r in results]
    p99 = [percentile(r["change_ms"], 99) for r in results]
    ax[1].plot(ns, p50, "o-", label="p50")
    ax[1].plot(ns, p99, "s-", label="p99")
    ax[1].axhline(1000, color="grey", ls=":", label="p99 target at N=1000")
    ax[1].set_ylabel("ms, one endpoint change → all applied")
    ax[2].plot(ns, [r["controller_rss_mib"] for r in results], "o-", label="controller")
    ax[2].plot(ns, [r["broker_rss_mib"] for r in results], "s-", label="broker")
    ax[2].axhline(300 / 1.048576, color="grey", ls=":", label="controller target (300 MB)")
    ax[2].set_ylabel("RSS, MiB")
    for a in ax:
        a.set_xlabel("simulated hosts (N)")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"Plexus fan-out: one overlay of {endpoints:,} endpoints, N simulated agents")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"fanout: plot written to {path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__)
    ap.add_argument("--hosts", default="100,300,1000", help="values of N, comma-separated")
    ap.add_argument("--endpoints", type=int, default=20_000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4, help="simulator processes")
    ap.add_argument("--relays", type=int, default=0, help="agents behind this many relays")
    ap.add_argument("--plot", type=Path, default=Path("benchmarks/fanout.png"))
    ap.add_argument("--quick", action="store_true", help="N=4,8; 200 endpoints; 5 changes")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--broker", help=argparse.SUPPRESS)
    ap.add_argument("--identities", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args)
        return {}
    if args.quick:
        args.hosts, args.endpoints, args.changes, args.workers = "4,8", 200, 5, 2
    exit_on_signals()
    results = [
        one_n(int(n), args.endpoints, args.changes, args.workers, args.relays)
        for n in args.hosts.split(",")
    ]
    rows: list[dict[str, Any]] = []
    for r in results:
        n = r["n"]
        tag = f"N={n}" + (f" behind {r['relays']} relays" if r["relays"] else "")
        loaded = r["loaded_s"]
        rows.append(
            {
                "what": f"{tag}: loaded: compartments / endpoints, one batch each",
                "value": f"{loaded['compartments']:.2f} s / {loaded['endpoints']:.2f} s",
            }
        )
        rows.append({"what": f"{tag}: change → all applied", **summary(r["change_ms"])})
        rows.append({"what": f"{tag}: cold start → all in sync", "value": f"{r['cold_s']:.1f} s"})
        rows.append({"what": f"{tag}: controller RSS", "value": f"{r['controller_rss_mib']} MiB"})
        rows.append({"what": f"{tag}: broker RSS", "value": f"{r['broker_rss_mib']} MiB"})
        rows.append({"what": f"{tag}: simulators' RSS", "value": f"{r['sim_rss_mib']} MiB"})
        again = r["sessions"]
        rows.append(
            {
                "what": f"{tag}: broker sessions made again (agents / controller)",
                "value": f"{again['agents']} / {again['controller']}",
            }
        )
        for phase in ("cold", "changes"):
            cpu = r[f"{phase}_cpu_s"]
            took = r["cold_s"] if phase == "cold" else r["changes_wall_s"]
            used = ", ".join(f"{who} {s} s" for who, s in cpu.items())
            rows.append({"what": f"{tag}: CPU during {phase} ({took:.1f} s)", "value": used})
        sent = ", ".join(f"{kind} {kb:,} kB" for kind, kb in sorted(r["changes_sent_kb"].items()))
        rows.append({"what": f"{tag}: published per change, by topic kind", "value": sent})
    plot(results, args.plot, args.endpoints)
    extra = {"endpoints": args.endpoints, "changes": args.changes, "workers": args.workers}
    extra["relays"] = args.relays
    return report("fanout", rows, extra, TARGETS)


if __name__ == "__main__":
    main()
