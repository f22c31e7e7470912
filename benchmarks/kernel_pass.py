"""The Linux driver's cold pass alone (root): in a network namespace of its own, one
agent (the real ``Agent`` on ``LinuxKernel``, no broker) holds L local compartments
(default 200) and an overlay of R remote endpoints (default 10,000) and makes them in
one pass; the time of each kind of action (the namespaces, the veths, the routes, the
batch of FDB and neighbour entries); then a full read of it all by a driver that holds
nothing yet (what an agent started again does first) and a second one; then the pass
that removes it all again.

What ``benchmarks.kernel_scale``'s cold start spends in its pass, without the process
start, the broker and the controller around it: where profiling the agent's kernel work
starts (``py-spy record --pid`` of the ``--inside`` process).

The agent's process collects garbage as the daemon's does (``--gc-default``: Python's
default thresholds).

    sudo .venv/bin/python -m benchmarks.kernel_pass [--local 200] [--remote 10000]
        [--gc-default] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from .common import collect_as_daemons, gc_flag, report

NET = "ks"
#: how the table names the driver's runs (``LinuxKernel._apply_run``)
RUNS = {
    "batch": "FDB and neighbour batch",
    "dellink": "veth deletes as a group",
    "addveth": "veth adds, one thread (AddVeth)",
    "netns": "namespaces, one thread (AddNamespace)",
    "route": "default routes, one thread (SetRoute)",
}
SHARD = 5000


def _ip(i: int) -> str:
    return f"10.230.{i // 250 + 1}.{i % 250 + 2}"


def _mac(i: int) -> str:
    return f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


async def inside(host: str, local: int, remote: int) -> dict[str, Any]:
    """In the namespace: the cold pass and the teardown, timed by action type."""
    import proto
    from agents.agent import Agent
    from agents.kernel.linux import LinuxKernel
    from proto import topics

    spent: Counter[str] = Counter()
    kernel = LinuxKernel(host)
    apply_one, apply_run = kernel._apply, kernel._apply_run

    async def timed_one(action: Any) -> None:
        t = time.perf_counter()
        try:
            await apply_one(action)
        finally:
            spent[type(action).__name__] += time.perf_counter() - t

    async def timed_run(kind: str, run: Any) -> Any:
        t = time.perf_counter()
        try:
            return await apply_run(kind, run)
        finally:
            name = RUNS.get(kind, kind)
            spent[name] += time.perf_counter() - t

    kernel._apply = timed_one  # type: ignore[method-assign]
    kernel._apply_run = timed_run  # type: ignore[method-assign]
    agent = Agent(host, kernel, "198.18.250.1")
    spec = proto.NetworkSpec(
        id=NET, mode="overlay", subnet="10.230.0.0/16", gateway="10.230.0.1", vni=4600, mtu=1450
    )

    def desired(gen: int, n: int) -> bytes:
        comps = tuple(
            proto.Compartment(
                id=f"k{i}",
                endpoints=(
                    proto.LocalEndpoint(
                        id=f"e{i}",
                        network=NET,
                        index=0,
                        mac=_mac(i),
                        ip=_ip(i),
                        prefixlen=16,
                        default_route=True,
                    ),
                ),
            )
            for i in range(n)
        )
        doc = proto.HostDesired(
            host=host, generation=gen, networks=(spec,) if n else (), compartments=comps
        )
        return proto.encode(doc)

    recs = tuple(
        proto.EndpointRecord(id=f"e{i}", host=f"sim{i % 5}", mac=_mac(i), ip=_ip(i),
                             vtep=f"198.18.250.{10 + i % 5}", gen=1)
        for i in range(local, local + remote)
    )  # fmt: skip
    shards = max(1, -(-len(recs) // SHARD))
    rows: dict[str, Any] = {}
    try:
        agent.on_message(topics.host_desired(host), desired(1, local))
        for k in range(shards):
            snap = proto.NetworkSnapshot(
                network=NET, generation=1, shard=k, shards=shards,
                records=recs[k * SHARD : (k + 1) * SHARD],
            )  # fmt: skip
            agent.on_message(topics.network_snapshot(NET, k), proto.encode(snap))
        t = time.perf_counter()
        done = await agent.reconcile(True)
        rows["cold pass"] = (time.perf_counter() - t, done.actions, done.errors[:3])
        rows.update({f"  {kind}": (s, None, []) for kind, s in spent.most_common()})
        # what an agent started again reads first: the whole kernel, by a driver that
        # holds nothing yet (restart adoption), then by one that read it before
        fresh = LinuxKernel(host)
        try:
            for what in ("full read, fresh driver", "full read, again"):
                t = time.perf_counter()
                await fresh.read(True)
                rows[what] = (time.perf_counter() - t, None, [])
        finally:
            await fresh.close()
    finally:
        spent.clear()
        agent.on_message(topics.host_desired(host), desired(2, 0))
        t = time.perf_counter()
        done = await agent.reconcile(True)
        rows["teardown pass"] = (time.perf_counter() - t, done.actions, done.errors[:3])
        rows.update({f"  {kind} (teardown)": (s, None, []) for kind, s in spent.most_common()})
        await kernel.close()
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kernel_pass", description=__doc__)
    ap.add_argument("--local", type=int, default=200)
    ap.add_argument("--remote", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="10 local, 200 remote")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    gc_flag(ap)
    args = ap.parse_args(argv)
    collector = collect_as_daemons(args)  # the --inside process's is the one that counts
    if args.quick:
        args.local, args.remote = 10, 200
    if args.inside:
        found = asyncio.run(inside(args.inside, args.local, args.remote))
        print(json.dumps(found))
        return {}
    if os.geteuid() != 0:
        sys.exit("this benchmark makes namespaces and links in one of its own: run it as root")
    from agents.kernel import netns
    from lab.records import record
    from proto import names

    ns, host = f"pxbench-pass-{os.getpid()}", f"pass{os.getpid()}"
    record("netns", ns)
    record("netns-prefix", names.netns_prefix(host))
    netns.create(ns)
    try:
        cmd = ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "benchmarks.kernel_pass"]
        cmd += ["--inside", host, "--local", str(args.local), "--remote", str(args.remote)]
        cmd += ["--gc-default"] if args.gc_default else []
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            sys.exit(run.stderr[-3000:])
        found = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        for left in [n for n in netns.listnetns() if n.startswith(names.netns_prefix(host))]:
            netns.remove(left)  # what a failed teardown left
        netns.remove(ns)
    rows = []
    for what, (seconds, actions, errors) in found.items():
        value = f"{seconds * 1000:.0f} ms" + (f", {actions} actions" if actions else "")
        rows.append({"what": what, "value": value + (f", errors {errors}" if errors else "")})
    return report("kernel_pass", rows, {"local": args.local, "remote": args.remote, **collector})


if __name__ == "__main__":
    main()
