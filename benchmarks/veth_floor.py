"""What the kernel alone costs for what an endpoint brings to its host (root): in a
namespace of its own (the "host"), a bridge; then, R times, N namespaces and N veth
pairs each made in ONE netlink request (host end in the bridge and up, peer moved into
its namespace) — pyroute2, no agent, nothing else. The lab's hosts share one kernel,
whose link changes all take one lock (RTNL): a batch of endpoints cannot be applied on
every host of a one-machine lab faster than the kernel makes their veths one by one.
Then half of each round's veths are deleted one request each, half as one link group
(what :mod:`agents.kernel.dellinks` does).

    .venv/bin/python -m benchmarks.veth_floor [--count 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from pyroute2 import IPRoute, netns

from agents.kernel.dellinks import DOOMED
from lab.records import record

from .common import report, summary


def measure(count: int, rounds: int) -> list[dict[str, Any]]:
    tag = f"vf{os.getpid() % 100000}"
    host = f"{tag}-host"
    made = [host]
    record("netns", host)
    netns.create(host)
    ns_ms, veth_ms, one_ms, group_ms = [], [], [], []
    try:
        with IPRoute(netns=host) as ipr:
            ipr.link("add", ifname="br0", kind="bridge")
            bridge = ipr.link_lookup(ifname="br0")[0]
            ipr.link("set", index=bridge, state="up")
            for r in range(rounds):
                names = [f"{tag}-{r}-{i}" for i in range(count)]
                for name in names:
                    record("netns", name)
                    t = time.perf_counter()
                    netns.create(name)
                    ns_ms.append((time.perf_counter() - t) * 1000)
                    made.append(name)
                made_links = []
                for i, name in enumerate(names):
                    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
                    try:
                        t = time.perf_counter()
                        ipr.link(
                            "add",
                            ifname=f"v{r}x{i}",
                            kind="veth",
                            master=bridge,
                            state="up",
                            peer={"ifname": "eth0", "net_ns_fd": fd},
                        )
                        veth_ms.append((time.perf_counter() - t) * 1000)
                    finally:
                        os.close(fd)
                    made_links.append(ipr.link_lookup(ifname=f"v{r}x{i}")[0])
                # half deleted one request each, half as one group (agents.kernel.dellinks)
                half = len(made_links) // 2
                t = time.perf_counter()
                for idx in made_links[:half]:
                    ipr.link("del", index=idx)
                one_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                for idx in made_links[half:]:
                    ipr.link("set", index=idx, group=DOOMED)
                ipr.link("del", group=DOOMED)
                group_ms.append((time.perf_counter() - t) * 1000)
    finally:
        for name in made:
            try:
                netns.remove(name)
            except OSError as e:
                print(f"could not remove namespace {name}: {e}")
    return [
        {"what": "namespace made (pyroute2, forks a helper)", **summary(ns_ms)},
        {"what": "veth pair in one request: bridge port + peer in a namespace", **summary(veth_ms)},
        {
            "what": f"so {count} endpoints' veths, one after another",
            "value": f"{sum(veth_ms) / rounds:.0f} ms",
        },
        {"what": f"{count // 2} veths deleted, one request each", **summary(one_ms)},
        {"what": f"{count - count // 2} veths deleted as one link group", **summary(group_ms)},
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.veth_floor", description=__doc__)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rows = measure(args.count, args.rounds)
    return report("veth_floor", rows, {"count": args.count, "rounds": args.rounds})


if __name__ == "__main__":
    main()
