"""Run inside a fresh network namespace (``nsenter --net``) as host ``HOST``: the Linux
driver makes N compartments with a veth each, then deletes the veths in one run (one
already gone among them) beside links that are not its own; prints the findings as one
JSON line. The compartments' namespaces are the driver's (``plexus:HOST:…``), removed
at the end."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

from pyroute2 import AsyncIPRoute

from agents import plan as p
from agents.kernel.dellinks import DOOMED
from agents.kernel.linux import LinuxKernel
from agents.model import Bridge, Veth
from proto import names


async def main(host: str, n: int) -> dict[str, object]:
    k = LinuxKernel(host)
    out: dict[str, object] = {}
    spaces = [names.netns(host, f"c{i}") for i in range(n)]
    try:
        await k.read()
        await k.apply(p.AddBridge(Bridge("pxbdel", "dl", 1500, "10.231.0.1/16")))
        veths = []
        for i, ns in enumerate(spaces):
            await k.apply(p.AddNamespace(ns))
            mac = f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"
            v = Veth(
                names.veth(f"e{i}"),
                f"e{i}",
                "pxbdel",
                ns,
                "eth0",
                mac,
                f"10.231.1.{i + 2}/16",
                1500,
            )
            await k.apply(p.AddVeth(v))
            veths.append(v)
        async with AsyncIPRoute() as ipr:  # not the driver's: a veth and a bridge
            await ipr.link("add", ifname="fgnveth0", kind="veth", peer={"ifname": "fgnveth1"})
            await ipr.link("add", ifname="fgnbridge", kind="bridge")
        before = await k.read(True)
        out["made"] = len(before.veths)
        run: list[p.Action] = [p.DelVeth(v.name) for v in veths]
        run.insert(n // 2, p.DelVeth("pxenothere"))
        t = time.perf_counter()
        outcomes = await k.apply_many(run)
        out["delete_seconds"] = time.perf_counter() - t
        out["failed"] = [str(o) for o in outcomes if o is not None]
        view = (await k.read(False)).copy()
        st = await k.read(True)
        out["veths_left"] = len(st.veths)
        out["view_equals_kernel"] = view == st
        foreign = []
        for name in ("fgnveth0", "fgnveth1", "fgnbridge"):
            try:
                socket.if_nametoindex(name)
                foreign.append(name)
            except OSError:
                pass
        out["foreign_left"] = foreign
        async with AsyncIPRoute() as ipr:
            out["in_doomed_group"] = [
                link.get_attr("IFLA_IFNAME")
                async for link in await ipr.link("dump")
                if link.get_attr("IFLA_GROUP") == DOOMED
            ]
        # the peers went with them: each compartment holds its loopback only
        inner = []
        for ns in spaces:
            async with AsyncIPRoute(netns=ns) as ipr:
                inner += [ln.get_attr("IFLA_IFNAME") async for ln in await ipr.link("dump")]
        out["inner_left"] = sorted(set(inner))
    finally:
        for ns in spaces:
            await k.apply(p.DelNamespace(ns))
        await k.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
