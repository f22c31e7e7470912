"""Run inside a fresh network namespace (``nsenter --net``) as host ``HOST``: the Linux
driver makes N compartments and then their veths in one run (:mod:`agents.kernel.veths`)
— among them one whose compartment holds a leftover of the inner end's name (made the
old way after the run) and one whose compartment does not exist (it fails, alone) —
then their default routes in one run, reads each compartment and the host's own
namespace (a bridge, a VXLAN device, the veths' host ends) as the driver does
(:mod:`agents.kernel.dumps`) and as pyroute2 does, and everything back; prints the
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
from typing import Any

from pyroute2 import AsyncIPRoute

from agents import plan as p
from agents.kernel.dumps import Link, Namespace, Route, read_here, read_inside
from agents.kernel.linux import LinuxKernel
from agents.kernel.netlink import link_kind
from agents.kernel.netns import netlink_socket, run_in
from agents.model import Bridge, Veth, Vxlan
from proto import names

IFF_RUNNING = 0x40
#: the pair of compartment SMALL has an MTU under IPv6's minimum: the kernel keeps no
#: IPv6 for its ends, and refuses to set their address generation (EAFNOSUPPORT)
SMALL, SMALL_MTU = 2, 1200


def inner_facts(ifname: str) -> dict[str, object]:
    """In a compartment (:func:`run_in`): the inner end's sysctls the run sets."""
    base = "/proc/sys/net/ipv4"
    return {
        "retrans": Path(f"{base}/neigh/{ifname}/retrans_time_ms").read_text().strip(),
        "arp_notify": Path(f"{base}/conf/{ifname}/arp_notify").read_text().strip(),
        **ipv6_facts(ifname),
    }


def ipv6_facts(ifname: str) -> dict[str, object]:
    """The calling thread's namespace: link ``ifname``'s IPv6 address generation and
    addresses, once it is up with a carrier (when the kernel makes a link-local one)."""
    for _ in range(300):
        (link,) = [ln for ln in read_here().links if ln.ifname == ifname]
        if link.flags & IFF_RUNNING:  # operationally up: what makes a link-local address
            break
        time.sleep(0.01)
    table = Path("/proc/thread-self/net/if_inet6").read_text().splitlines()
    mode = Path(f"/proc/sys/net/ipv6/conf/{ifname}/addr_gen_mode")  # no IPv6 on it: none
    return {
        "running": bool(link.flags & IFF_RUNNING),
        "addr_gen_mode": mode.read_text().strip() if mode.exists() else None,
        "ipv6": [line.split()[0] for line in table if line.split()[-1] == ifname],
    }


def pyroute2_link(ln: Any) -> Link:
    """A link as :mod:`agents.kernel.dumps` reads it, from pyroute2's parse of it."""
    kind = link_kind(ln)
    data = ln.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA") if kind else None
    vxlan = kind == "vxlan" and data is not None
    return Link(
        ln["index"],
        ln.get("ifname"),
        kind,
        ln.get("link") or 0,
        ln.get("address") or "",
        ln.get("mtu"),
        ln["flags"],
        ln.get("ifalias"),
        ln.get("master") or 0,
        ln.get_attr("IFLA_LINK_NETNSID") is not None,
        kind == "bridge" and data is not None and bool(data.get("IFLA_BR_NF_CALL_IPTABLES")),
        data.get("IFLA_VXLAN_ID") if vxlan else 0,
        (data.get("IFLA_VXLAN_LOCAL") or "") if vxlan else "",
        data.get("IFLA_VXLAN_PORT") if vxlan else 0,
    )


async def pyroute2_reading(fd: int) -> Namespace:
    """What :mod:`agents.kernel.dumps` reads of a namespace (the socket ``fd``'s), as
    pyroute2 parses it."""
    async with AsyncIPRoute(fileno=fd) as ipr:
        links = [pyroute2_link(ln) async for ln in await ipr.link("dump")]
        addrs: dict[int, list[str]] = {}
        async for a in await ipr.addr("dump", family=2):
            addrs.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
        routes = [
            Route(r.get("dst"), r["dst_len"], r.get("oif"), r.get("gateway"))
            async for r in await ipr.route("dump", family=2, table=254)
        ]
    return Namespace(links, addrs, routes)


async def main(host: str, n: int) -> dict[str, object]:
    k = LinuxKernel(host)
    out: dict[str, object] = {}
    spaces = [names.netns(host, f"c{i}") for i in range(n)]
    missing = names.netns(host, "gone")
    try:
        await k.read()
        await k.apply(p.AddBridge(Bridge("pxbveth", "vt", 1500, "10.232.0.1/16")))
        vx = Vxlan("pxvveth", "vt", 4711, "10.232.0.1", 4789, 1450, "pxbveth")
        await k.apply(p.AddVxlan(vx))
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
                SMALL_MTU if i == SMALL else 1400 + i,
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
            run_in(ns, partial(read_inside, ns))
            == await pyroute2_reading(run_in(ns, netlink_socket))
            for ns in spaces
        ]
        here_read = await asyncio.to_thread(read_here)
        out["host_as_pyroute2_reads_it"] = here_read == await pyroute2_reading(netlink_socket())
        out["host_kinds"] = sorted({ln.kind or "" for ln in here_read.links})
        view = (await k.read(False)).copy()
        st = await k.read(True)
        out["view_equals_kernel"] = view == st
        out["as_desired"] = [st.veths.get(v.name) == v for v in veths[:-1]]
        out["vxlan_as_desired"] = st.vxlans.get(vx.name) == vx
        out["sysctls"] = [run_in(v.netns, partial(inner_facts, v.inner)) for v in veths[:-1]]
        out["host_ends"] = [await asyncio.to_thread(ipv6_facts, v.name) for v in veths[:-1]]
    finally:
        for ns in spaces:
            await k.apply(p.DelNamespace(ns))
        await k.apply(p.DelVxlan("pxvveth"))
        await k.apply(p.DelBridge("pxbveth"))
        await k.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
