"""The owned state read back from the kernel (:meth:`LinuxKernel.read` in full): links
by their alias (``plexus:<kind>:<id>``), the inner ends in the owned namespaces, the
VXLAN devices' forwarding and neighbour entries (a batch dump: :mod:`.batch`), the
nftables tables, the sysctls Plexus sets, and what Plexus does not own but must know
(foreign prefixes, a transparent bridge's uplink). Netlink and OS errors of a
namespace or of the entry dumps become :class:`~agents.errors.KernelError` here."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from proto import names

from ..errors import KernelError, VtepUnresolved
from ..model import HANDOVER, TAKEN, Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from . import nft
from .batch import NetlinkBatch
from .inside import Link, read_all
from .netlink import IFF_UP, NUD_PERMANENT, link_kind
from .netns import is_there, listnetns

#: the sysctls the agent reads back (and sets when a network needs them)
SYSCTLS = ("net.ipv4.ip_forward",)


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


async def read_state(
    ipr: AsyncIPRoute,
    prefix: str,
    batch: NetlinkBatch,
    runtime: Collection[str] = (),
    known: HostState | None = None,
) -> HostState:
    """The Plexus-owned objects of the host whose namespaces start with ``prefix``:
    ``ipr`` is a socket of the host's namespace, ``batch`` dumps the entries (the
    namespaces are read on a thread of their own: :mod:`.inside`). ``runtime``: the
    runtime namespaces to look into, those that are still there
    (:func:`.netns.is_there`). ``known``: an earlier
    state whose entries equal to those read are taken as they are (memory only)."""
    st = HostState()
    st.namespaces = {n for n in listnetns() if n.startswith(prefix)}
    st.runtime = {ns for ns in runtime if is_there(ns)}
    links = [ln async for ln in await ipr.link("dump")]
    by_index = {ln["index"]: ln for ln in links}
    addrs: dict[int, list[str]] = {}
    async for a in await ipr.addr("dump", family=2):
        addrs.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
    st.foreign, st.host_routes = await _routes(ipr, links, addrs)
    vx_index: dict[int, str] = {}
    host_veths: dict[int, tuple[Any, str]] = {}
    # a port of an owned bridge that Plexus does not own is a transparent uplink
    foreign_ports = {
        ln.get("master"): ln.get("ifname")
        for ln in links
        if ln.get("master") and names.parse_alias(ln.get("ifalias")) is None
    }
    for ln in links:
        name = ln.get("ifname") or ""
        owned = names.parse_alias(ln.get("ifalias"))
        if not name.startswith(names.IF_PREFIX) or owned is None:
            continue
        kind, ident = owned
        master = by_index.get(ln.get("master") or 0)
        master_name = master.get("ifname") if master is not None else ""
        if kind == "bridge" and link_kind(ln) == "bridge":
            uplink = foreign_ports.get(ln["index"])
            # an uplinked bridge holds the uplink's own addresses, not a gateway's
            own = [] if uplink else addrs.get(ln["index"], [])
            data = ln.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
            filtered = bool(data.get("IFLA_BR_NF_CALL_IPTABLES")) if data else False
            own_address = own[0] if own else None
            st.bridges[name] = Bridge(
                name, ident, ln.get("mtu"), own_address, uplink, filtered=filtered
            )
        elif kind == "vxlan" and link_kind(ln) == "vxlan":
            data = ln.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
            st.vxlans[name] = Vxlan(
                name,
                ident,
                data.get("IFLA_VXLAN_ID"),
                data.get("IFLA_VXLAN_LOCAL"),
                data.get("IFLA_VXLAN_PORT"),
                ln.get("mtu"),
                master_name,
            )
            vx_index[ln["index"]] = name
        elif kind == "veth" and link_kind(ln) == "veth":
            host_veths[ln["index"]] = (ln, master_name)
    # the inner ends: IFLA_LINK of a peer names the host-side ifindex (every namespace
    # read on one thread: :mod:`.inside`)
    spaces = sorted(st.namespaces | st.runtime)
    for ns, inside in zip(spaces, await read_all(spaces), strict=True):
        if isinstance(inside, OSError):
            raise KernelError("read", ns, inside.errno or 0, str(inside))
        # in a runtime's namespace, only a route through the agent's own interfaces
        ours = {ln.ifindex for ln in inside.links if _peer(ln, host_veths) is not None}
        anyone = ns not in st.runtime
        gateway = None
        for gw, oif in inside.defaults:
            if anyone or oif in ours:
                gateway = gw
        st.routes[ns] = gateway
        if names.is_router_netns(ns):
            try:
                rules, _, _ = await nft.read(ns)
            except OSError as e:
                raise KernelError("read", ns, e.errno or 0, str(e)) from None
            if rules is not None:  # as the view has it: no entry, no table
                st.ns_rules[ns] = rules
        for ln in inside.links:
            peer = _peer(ln, host_veths)
            if peer is None:
                continue
            host_ln, bridge = peer
            owned = names.parse_alias(host_ln.get("ifalias"))
            assert owned is not None
            own = inside.addrs.get(ln.ifindex, [])
            up = bool(host_ln["flags"] & IFF_UP) and bool(ln.flags & IFF_UP)
            st.veths[host_ln.get("ifname")] = Veth(
                name=host_ln.get("ifname"),
                endpoint=owned[1],
                bridge=bridge,
                netns=ns,
                inner=ln.ifname,
                mac=ln.mac,
                address=own[0] if own else "",
                mtu=ln.mtu,
                up=up,
            )
    # host-side veths whose peer is in no owned namespace: handed over (the peer bare
    # in the host's namespace, or taken into another one), else stale halves
    seen = {v.name for v in st.veths.values()}
    for ln, bridge in host_veths.values():
        if ln.get("ifname") not in seen:
            st.veths[ln.get("ifname")] = _unseen(ln, bridge, by_index, addrs)
    if vx_index:
        try:
            fdb = await asyncio.to_thread(batch.dump_neigh, socket.AF_BRIDGE, vx_index)
            neigh = await asyncio.to_thread(batch.dump_neigh, socket.AF_INET, vx_index)
        except OSError as e:
            raise KernelError("read", "neighbours", e.errno or 0, str(e)) from None
        _entries(st, fdb, neigh, known)
    st.rules, st.counters, st.elements = await nft.read()
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            st.sysctls[key] = sysctl_path(key).read_text().strip()
    return st


def _entries(
    st: HostState,
    fdb: list[tuple[str, int, str, str]],
    neigh: list[tuple[str, int, str, str]],
    known: HostState | None,
) -> None:
    """The VXLAN devices' entries into ``st``; where ``known`` (the last read, or the
    view) holds an equal one, that one: a host's tens of thousands of entries are not
    held twice, once by the view and once by the desired state sharing the last's."""
    same = {f: f for f in known.fdb} if known is not None else {}
    had = known.neigh if known is not None else {}
    for dev, _, mac, dst in fdb:
        f = Fdb(dev, mac, dst)
        st.fdb.add(same.get(f, f))
    for dev, state, mac, dst in neigh:
        if state & NUD_PERMANENT:
            n = had.get((dev, dst))
            st.neigh[dev, dst] = n if n is not None and n.mac == mac else Neigh(dev, dst, mac)


def _unseen(ln: Any, bridge: str, by_index: dict[int, Any], addrs: dict[int, list[str]]) -> Veth:
    """A host end whose peer is in no namespace the agent read. Peer in the host's
    namespace under a handover name: a pair for a runtime to take (:data:`HANDOVER`);
    peer in another namespace (``IFLA_LINK_NETNSID``): taken, if the plan wants it so
    (:data:`TAKEN`; else it is a stale half like one with no peer)."""
    owned = names.parse_alias(ln.get("ifalias"))
    assert owned is not None
    name, up = ln.get("ifname"), bool(ln["flags"] & IFF_UP)
    if ln.get_attr("IFLA_LINK_NETNSID") is not None:
        return Veth(name, owned[1], bridge, TAKEN, "", "", "", 0, up)
    peer = by_index.get(ln.get("link") or 0)
    if peer is not None and link_kind(peer) == "veth" and peer.get("link") == ln["index"]:
        own = addrs.get(peer["index"], [])
        inner = peer.get("ifname") or ""
        if inner == names.handover(owned[1]):
            mac, mtu = peer.get("address"), peer.get("mtu")
            return Veth(
                name, owned[1], bridge, HANDOVER, inner, mac, own[0] if own else "", mtu, up
            )
    return Veth(name, owned[1], bridge, "", "", "", "", 0, False)


def _peer(ln: Link, host_veths: dict[int, tuple[Any, str]]) -> tuple[Any, str] | None:
    """The agent's host end of the inner veth ``ln``, if it is one. Each end names the
    other's index: a pair of another namespace's links (a runtime's own plugin) with
    one index alike is not the agent's."""
    peer = host_veths.get(ln.link)
    if peer is None or ln.kind != "veth" or peer[0].get("link") != ln.ifindex:
        return None
    return peer


async def _routes(
    ipr: AsyncIPRoute, links: list[Any], addrs: dict[int, list[str]]
) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """The prefixes of addresses and main-table routes on links Plexus does not own
    (what may stand in a network's way); and the routes through the overlay
    routers (on the transit bridge, with a gateway)."""
    ifname = {ln["index"]: ln.get("ifname") or "" for ln in links}
    owned = {
        ln["index"]
        for ln in links
        if ifname[ln["index"]].startswith(names.IF_PREFIX)
        and names.parse_alias(ln.get("ifalias")) is not None
    }
    found: set[tuple[str, str]] = set()
    through: dict[str, str] = {}
    for index, cidrs in addrs.items():
        if index not in owned:
            for cidr in cidrs:
                net = ipaddress.IPv4Network(cidr, strict=False)
                found.add((str(net), ifname.get(index, "?")))
    async for r in await ipr.route("dump", family=2, table=254):
        oif, dst = r.get("oif"), r.get("dst")
        if not dst:
            continue
        prefix = f"{dst}/{r['dst_len']}"
        if oif not in owned:
            found.add((prefix, ifname.get(oif, "?")))
        elif ifname.get(oif) == names.TRANSIT_BRIDGE and r.get("gateway"):
            through[prefix] = r.get("gateway")
    return tuple(sorted(found)), through


async def ipv4_address(ifname: str) -> str:
    """The first IPv4 address of the host's link ``ifname`` (the VTEP interface)."""
    try:
        async with AsyncIPRoute() as ipr:
            found = await ipr.link_lookup(ifname=ifname)
            if not found:
                raise VtepUnresolved(ifname, "does not exist")
            async for a in await ipr.addr("dump", index=found[0], family=2):
                return str(a.get("address"))
    except (NetlinkError, OSError) as e:
        raise VtepUnresolved(ifname, f"cannot be read: {e}") from None
    raise VtepUnresolved(ifname, "has no IPv4 address")
