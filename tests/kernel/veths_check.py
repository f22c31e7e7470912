"""Run inside a fresh network namespace (``nsenter --net``) as host ``HOST``: the Linux
driver makes N compartments and then their veths in one run (:mod:`agents.kernel.veths`)
— among them one whose compartment holds a leftover of the inner end's name (made the
old way after the run) and one whose compartment does not exist (it fails, alone) —
then their default routes in one run, reads each compartment as the driver does
(:mod:`agents.kernel.inside`) and as pyroute2 does, and everything back; prints the
findings as one JSON line. The compartments'
namespaces are the driver's (``plexus:HOST:…``), removed at the end."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from functools import partial
from pathlib import Path

from pyroute2 import AsyncIPRoute

from agents import plan as p
from agents.kernel.inside import Inside, Link, read_inside
from agents.kernel.linux import LinuxKernel
from agents.kernel.netlink import link_kind
from agents.kernel.netns import netlink_socket, run_in
from agents.model import Bridge, Veth
from proto import names


def inner_facts(ifname: str) -> dict[str, str]:
    """In a compartment (:func:`run_in`): the inner end's sysctls the run sets."""
    base = "/proc/sys/net/ipv4"
    return {
        "retrans": Path(f"{base}/neigh/{ifname}/retrans_time_ms").read_text().strip(),
        "arp_notify": Path(f"{base}/conf/{ifname}/arp_notify").read_text().strip(),
    }


async def pyroute2_inside(ns: str) -> Inside:
    """What :func:`read_inside` reads, as pyroute2 parses it."""
    async with AsyncIPRoute(fileno=run_in(ns, netlink_socket)) as ipr:
        links = [
            Link(
                ln["index"],
                ln.get("ifname"),
                link_kind(ln),
                ln.get("link") or 0,
                ln.get("address"),
                ln.get("mtu"),
                ln["flags"],
            )
            async for ln in await ipr.link("dump")
        ]
        addrs: dict[int, list[str]] = {}
        async for a in await ipr.addr("dump", family=2):
            addrs.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
        defaults = [
            (r.get("gateway"), r.get("oif"))
            async for r in await ipr.route("dump", family=2, table=254)
            if r["dst_len"] == 0 and r.get("gateway")
        ]
    return Inside(links, addrs, defaults)


async def main(host: str, n: int) -> dict[str, object]:
    k = LinuxKernel(host)
    out: dict[str, object] = {}
    spaces = [names.netns(host, f"c{i}") for i in range(n)]
    missing = names.netns(host, "gone")
    try:
        await k.read()
        await k.apply(p.AddBridge(Bridge("pxbveth", "vt", 1500, "10.232.0.1/16")))
        for ns in spaces:
            await k.apply(p.AddNamespace(ns))
        async with AsyncIPRoute(fileno=run_in(spaces[1], netlink_socket)) as ipr:
            await ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "lft1"})
        veths = [
            Veth(
                names.veth(f"e{i}"),
                f"e{i}",
                "pxbveth",
                ns,
                "eth0",
                f"02:00:00:01:{i >> 8:02x}:{i & 255:02x}",
                f"10.232.1.{i + 2}/16",
                1400 + i,
            )
            for i, ns in enumerate([*spaces, missing])
        ]
        here = os.readlink("/proc/thread-self/ns/net")
        t = time.perf_counter()
        outcomes = await k.apply_many([p.AddVeth(v) for v in veths])
        out["add_seconds"] = time.perf_counter() - t
        out["loop_thread_moved"] = os.readlink("/proc/thread-self/ns/net") != here
        for _ in range(500):  # a thread hands its outcome over, then ends
            left = [t.name for t in threading.enumerate() if t.name.startswith("netns")]
            if not left:
                break
            await asyncio.sleep(0.01)
        out["threads_left"] = left
        out["failed"] = [str(o) for o in outcomes if o is not None]
        out["failed_index"] = [i for i, o in enumerate(outcomes) if o is not None]
        routes = await k.apply_many([p.SetRoute(ns, "10.232.0.1") for ns in spaces])
        out["routes_failed"] = [str(o) for o in routes if o is not None]
        out["inside_as_pyroute2_reads_it"] = [
            run_in(ns, partial(read_inside, ns)) == await pyroute2_inside(ns) for ns in spaces
        ]
        view = (await k.read(False)).copy()
        st = await k.read(True)
        out["view_equals_kernel"] = view == st
        out["as_desired"] = [st.veths.get(v.name) == v for v in veths[:-1]]
        out["sysctls"] = [run_in(v.netns, partial(inner_facts, v.inner)) for v in veths[:-1]]
    finally:
        for ns in spaces:
            await k.apply(p.DelNamespace(ns))
        await k.apply(p.DelBridge("pxbveth"))
        await k.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
