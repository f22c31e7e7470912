"""A transparent network's uplink: a host link Plexus does not own, enslaved to the
network's bridge only where the host's configuration allows it. Its MAC, addresses and
routes move to the bridge (added there first, removed after, so the host stays
reachable) and back when it is released."""

from __future__ import annotations

import errno

from pyroute2 import AsyncIPRoute

from proto import names

from ..errors import KernelError
from .netlink import GONE, ensure


async def foreign_ports(ipr: AsyncIPRoute, bridge: int) -> list[str]:
    return [
        ln.get("ifname")
        async for ln in await ipr.link("dump")
        if ln.get("master") == bridge and names.parse_alias(ln.get("ifalias")) is None
    ]


async def move(ipr: AsyncIPRoute, src: int, dst: int) -> None:
    """The IPv4 addresses of ``src`` and its routes through a gateway, onto ``dst``:
    added there first, removed from ``src`` after, so the host stays reachable."""
    addrs = [
        (a.get("address"), a["prefixlen"])
        async for a in await ipr.addr("dump", index=src, family=2)
    ]
    routes = [
        r
        async for r in await ipr.route("dump", family=2, table=254)
        if r.get("oif") == src and r.get("gateway")
    ]
    for ip, plen in addrs:
        async with ensure(errno.EEXIST):
            await ipr.addr("add", index=dst, address=ip, prefixlen=plen)
    for ip, plen in addrs:
        async with ensure(*GONE):
            await ipr.addr("del", index=src, address=ip, prefixlen=plen)
    for r in routes:
        dst_net = f"{r.get('dst') or '0.0.0.0'}/{r['dst_len']}"
        await ipr.route(
            "replace",
            dst=dst_net,
            gateway=r.get("gateway"),
            oif=dst,
            priority=r.get("priority") or 0,
            table=254,
        )


async def attach(ipr: AsyncIPRoute, bridge: int, uplink: str) -> None:
    """Enslave the uplink; its MAC, addresses and routes move to the bridge."""
    found = await ipr.link_lookup(ifname=uplink)
    if not found:
        raise KernelError("attach", uplink, errno.ENODEV, "the uplink does not exist")
    up = found[0]
    (link,) = tuple(await ipr.link("get", index=up))
    if link.get("master") not in (None, 0, bridge):
        raise KernelError("attach", uplink, errno.EBUSY, "the uplink is in another bridge")
    await ipr.link("set", index=bridge, address=link.get("address"))
    await ipr.link("set", index=up, master=bridge, state="up")
    await move(ipr, up, bridge)


async def release(ipr: AsyncIPRoute, bridge: int, uplink: str) -> None:
    """Give the uplink its addresses and routes back and free it from the bridge."""
    found = await ipr.link_lookup(ifname=uplink)
    if not found:
        return
    await ipr.link("set", index=found[0], master=0)
    await move(ipr, bridge, found[0])
