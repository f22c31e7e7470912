"""Convergence on the real kernel, in a ``plexus lab`` of 3 hosts (root).

- N endpoint creations one at a time with ``wait=true``: API call → every host applied
  (wall, at the client; and the controller's own ``elapsed_ms``), and API call → first
  ICMP reply from a compartment on another host (a prober pings every millisecond);
- N endpoints created in one burst (concurrent calls, no wait) until every host is in
  sync (``/v1/status`` polled every 2 ms), each call over a connection of its own
  (:func:`benchmarks.rawhttp.burst`): through httpx this process spent 1.34 to 1.93 s of
  the 2 cores' CPU on a burst of 200 (the "client" of the "CPU meanwhile" row) and
  measured itself as much as the controller;
- ``POST /v1/batch?wait=true`` (``--rounds`` times): N endpoints whose compartments
  exist, N compartments with their endpoints, and the deletion of those 2N.

Each endpoint goes into a compartment of its own, created (and waited for) before the
timed call: the timed call includes making the endpoint's veth, moving it into the
compartment, addresses, routes, and on the other hosts the FDB and neighbour entries.

    sudo .venv/bin/python -m benchmarks.convergence [--count 200] [--hosts 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import Any

from cli.client import AsyncClient
from proto import names

from . import rawhttp
from .api import post
from .common import cpu_seconds, lab_run, report, summary

ROOT = Path(__file__).resolve().parents[1]
NET = "bench"
SUBNET = ipaddress.IPv4Network("10.200.0.0/16")
TARGETS = {
    "endpoint create → applied on every host (wall)": "p50 ≤ 8 ms, p99 ≤ 15 ms",
    "endpoint create → first ping from another host": "p99 ≤ 30 ms",
    "burst: endpoints created → every host in sync": "≤ 600 ms for 200",
    "batch: 200 endpoints in one call → applied (wall)": "≤ 150 ms",
    "batch: 200 compartments + endpoints → applied": "≤ 600 ms",
}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def address(i: int) -> str:
    return str(SUBNET[256 + i])  # 10.200.1.0 upwards; probers sit in 10.200.0.x


class Prober:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, netns: str) -> Prober:
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net=/run/netns/{netns}", sys.executable, "-m", "benchmarks.prober",
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if line.strip() != b"ready":
            raise RuntimeError(f"prober in {netns} did not start: {line!r}")
        return cls(proc)

    def aim(self, ip: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{ip}\n".encode())

    async def reply(self) -> float | None:
        assert self.proc.stdout is not None
        _, _, t = (await asyncio.wait_for(self.proc.stdout.readline(), 10)).decode().partition(" ")
        return None if t.strip() == "none" else float(t)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def measure(spec: Any, count: int, burst: int, rounds: int) -> dict[str, Any]:
    hosts = spec.hosts
    probers: dict[str, Prober] = {}
    async with AsyncClient(spec.controller_url, timeout=60) as http:
        await post(http, "/v1/networks", {"id": NET, "subnet": str(SUBNET), "vni": 4242}, True)
        for i, h in enumerate(hosts):
            comp = f"probe-{h}"
            await post(http, "/v1/compartments", {"id": comp, "host": h}, True)
            ep = {"network": NET, "compartment": comp, "ip": str(SUBNET[i + 2])}
            await post(http, "/v1/endpoints", ep, True)
            probers[h] = await Prober.start(names.netns(h, comp))
        try:
            comp_ms, applied, server, ping = [], [], [], []
            for i in range(count):
                host, peer = hosts[i % len(hosts)], hosts[(i + 1) % len(hosts)]
                t = time.monotonic()
                await post(http, "/v1/compartments", {"id": f"c{i}", "host": host}, True)
                comp_ms.append((time.monotonic() - t) * 1000)
                ip = address(i)
                probers[peer].aim(ip)
                t0 = time.monotonic()
                data = await post(
                    http, "/v1/endpoints", {"network": NET, "compartment": f"c{i}", "ip": ip}, True
                )
                t1 = time.monotonic()
                t2 = await probers[peer].reply()
                if t2 is None:
                    raise RuntimeError(f"{ip} on {host} never answered {peer}'s prober")
                applied.append((t1 - t0) * 1000)
                server.append(data["convergence"]["elapsed_ms"])
                ping.append((t2 - t0) * 1000)

            for i in range(burst):
                host = hosts[i % len(hosts)]
                await post(http, "/v1/compartments", {"id": f"b{i}", "host": host}, True)
            bodies = [
                {"network": NET, "compartment": f"b{i}", "ip": address(count + i)}
                for i in range(burst)
            ]
            cpu0 = cpu(spec)
            t0 = time.monotonic()
            await rawhttp.burst(spec.controller_url, "/v1/endpoints", bodies)
            t_created = time.monotonic()
            while not (await http.get("/v1/status"))["in_sync"]:  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # polling the API is the measurement
            t_sync = time.monotonic()
            used = {k: v - cpu0[k] for k, v in cpu(spec).items()}
            batch = await batches(http, hosts, rounds, burst, count + burst)
        finally:
            for p in probers.values():
                await p.stop()
    rows = [
        {"what": "compartment create (namespace) → applied (wall)", **summary(comp_ms)},
        {"what": "endpoint create → applied on every host (wall)", **summary(applied)},
        {"what": "endpoint create → applied, controller-measured", **summary(server)},
        {"what": "endpoint create → first ping from another host", **summary(ping)},
        {"what": f"burst: {burst} endpoint creates answered", "value": ms(t_created - t0)},
        {"what": "burst: endpoints created → every host in sync", "value": ms(t_sync - t0)},
        {
            "what": "burst: CPU meanwhile (2 cores)",
            "value": ", ".join(f"{k} {v:.2f} s" for k, v in used.items()),
        },
        *batch,
    ]
    return {"rows": rows, "hosts": len(hosts), "count": count, "burst": burst, "rounds": rounds}


async def batches(
    http: AsyncClient, hosts: list[str], rounds: int, size: int, first: int
) -> list[dict[str, Any]]:
    """``POST /v1/batch?wait=true``, ``rounds`` times each: ``size`` endpoints whose
    compartments exist; ``size`` compartments and their endpoints; the deletion of those
    compartments with their endpoints (each round's objects are deleted at its end)."""
    eps_ms, both_ms, del_ms = [], [], []
    for r in range(rounds):
        base = first + 2 * size * r
        comps = [{"id": f"r{r}a{i}", "host": hosts[i % len(hosts)]} for i in range(size)]
        await call(http, [create("compartment", c) for c in comps])
        ops = [
            create("endpoint", {"network": NET, "compartment": c["id"], "ip": address(base + i)})
            for i, c in enumerate(comps)
        ]
        eps_ms.append(await call(http, ops))
        ops = []
        for i in range(size):
            comp = {"id": f"r{r}b{i}", "host": hosts[i % len(hosts)]}
            ip = address(base + size + i)
            ep = {"network": NET, "compartment": comp["id"], "ip": ip}
            ops += [create("compartment", comp), create("endpoint", ep)]
        both_ms.append(await call(http, ops))
        gone = [c["id"] for c in comps] + [f"r{r}b{i}" for i in range(size)]
        ops = [{"op": "delete", "kind": "compartment", "id": c, "force": True} for c in gone]
        del_ms.append(await call(http, ops))
    return [
        {"what": f"batch: {size} endpoints in one call → applied (wall)", **summary(eps_ms)},
        {"what": f"batch: {size} compartments + endpoints → applied", **summary(both_ms)},
        {"what": f"batch: {2 * size} compartments deleted → applied", **summary(del_ms)},
    ]


def cpu(spec: Any) -> dict[str, float]:
    """CPU seconds used so far by the lab's controller, broker and agents (together),
    and by this process (the client making the calls)."""
    agents = sum(cpu_seconds(pid) for name, pid in spec.pids.items() if name.startswith("agent:"))
    return {
        "controller": cpu_seconds(spec.pids["controller"]),
        "broker": cpu_seconds(spec.pids["broker"]),
        "agents": agents,
        "client": cpu_seconds(os.getpid()),
    }


def create(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"op": "create", "kind": kind, "body": body}


async def call(http: AsyncClient, ops: list[dict[str, Any]]) -> float:
    """One batch, waited for; its wall time in ms (a batch not applied in time fails)."""
    t0 = time.monotonic()
    data = await http.request("POST", "/v1/batch", body={"ops": ops}, wait=60)
    elapsed = (time.monotonic() - t0) * 1000
    if not data["convergence"]["converged"]:
        raise RuntimeError(f"a batch was not applied in time: {data['convergence']}")
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.convergence", description=__doc__)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of batches (of --burst each)")
    ap.add_argument(
        "--quick", action="store_true", help="10 endpoints, bursts and batches of 10, 2 hosts"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.count, args.burst, args.hosts, args.rounds = 10, 10, 2, 2
    result = lab_run(
        args.hosts, "cb", lambda spec: measure(spec, args.count, args.burst, args.rounds)
    )
    return report(
        "convergence",
        result.pop("rows"),
        {**result},
        TARGETS,
    )


if __name__ == "__main__":
    main()
