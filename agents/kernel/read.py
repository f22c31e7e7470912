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

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from proto import names

from ..errors import KernelError, VtepUnresolved
from ..model import HANDOVER, TAKEN, Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from . import nft
from .batch import NetlinkBatch
from .dumps import Link, Namespace, read_all, read_here
from .netlink import IFF_UP, NUD_PERMANENT
from .netns import is_there, listnetns

#: the sysctls the agent reads back (and sets when a network needs them)
SYSCTLS = ("net.ipv4.ip_forward",)


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


async def read_state(
    prefix: str,
    batch: NetlinkBatch,
    runtime: Collection[str] = (),
    known: HostState | None = None,
) -> HostState:
    """The Plexus-owned objects of the host whose namespaces start with ``prefix``: the
    host's namespace (the calling process's) and the compartments are dumped raw
    (:mod:`.dumps`), ``batch`` dumps the entries. ``runtime``: the runtime namespaces to
    look into, those that are still there (:func:`.netns.is_there`). ``known``: an
    earlier state whose entries equal to those read are taken as they are (memory
    only)."""
    st = HostState()
    st.namespaces = {n for n in listnetns() if n.startswith(prefix)}
    st.runtime = {ns for ns in runtime if is_there(ns)}
    host = await asyncio.to_thread(read_here)
    links, addrs = host.links, host.addrs
    by_index = {ln.ifindex: ln for ln in links}
    st.foreign, st.host_routes = _routes(host)
    vx_index: dict[int, str] = {}
    host_veths: dict[int, tuple[Link, str]] = {}
    # a port of an owned bridge that Plexus does not own is a transparent uplink
    foreign_ports = {
        ln.master: ln.ifname for ln in links if ln.master and names.parse_alias(ln.alias) is None
    }
    for ln in links:
        owned = names.parse_alias(ln.alias)
        if not ln.ifname.startswith(names.IF_PREFIX) or owned is None:
            continue
        kind, ident = owned
        master = by_index.get(ln.master)
        master_name = master.ifname if master is not None else ""
        if kind == "bridge" and ln.kind == "bridge":
            uplink = foreign_ports.get(ln.ifindex)
            # an uplinked bridge holds the uplink's own addresses, not a gateway's
            own = [] if uplink else addrs.get(ln.ifindex, [])
            own_address = own[0] if own else None
            st.bridges[ln.ifname] = Bridge(
                ln.ifname, ident, ln.mtu, own_address, uplink, filtered=ln.filtered
            )
        elif kind == "vxlan" and ln.kind == "vxlan":
            st.vxlans[ln.ifname] = Vxlan(
                ln.ifname, ident, ln.vni, ln.local, ln.port, ln.mtu, master_name
            )
            vx_index[ln.ifindex] = ln.ifname
        elif kind == "veth" and ln.kind == "veth":
            host_veths[ln.ifindex] = (ln, master_name)
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
        for r in inside.routes:
            if r.dst_len == 0 and r.gateway and (anyone or r.oif in ours):
                gateway = r.gateway
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
            owned = names.parse_alias(host_ln.alias)
            assert owned is not None
            own = inside.addrs.get(ln.ifindex, [])
            up = bool(host_ln.flags & IFF_UP) and bool(ln.flags & IFF_UP)
            st.veths[host_ln.ifname] = Veth(
                name=host_ln.ifname,
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
        if ln.ifname not in seen:
            st.veths[ln.ifname] = _unseen(ln, bridge, by_index, addrs)
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


def _unseen(ln: Link, bridge: str, by_index: dict[int, Link], addrs: dict[int, list[str]]) -> Veth:
    """A host end whose peer is in no namespace the agent read. Peer in the host's
    namespace under a handover name: a pair for a runtime to take (:data:`HANDOVER`);
    peer in another namespace (``IFLA_LINK_NETNSID``): taken, if the plan wants it so
    (:data:`TAKEN`; else it is a stale half like one with no peer)."""
    owned = names.parse_alias(ln.alias)
    assert owned is not None
    name, up = ln.ifname, bool(ln.flags & IFF_UP)
    if ln.peer_elsewhere:
        return Veth(name, owned[1], bridge, TAKEN, "", "", "", 0, up)
    peer = by_index.get(ln.link)
    if peer is not None and peer.kind == "veth" and peer.link == ln.ifindex:
        own = addrs.get(peer.ifindex, [])
        if peer.ifname == names.handover(owned[1]):
            return Veth(
                name,
                owned[1],
                bridge,
                HANDOVER,
                peer.ifname,
                peer.mac,
                own[0] if own else "",
                peer.mtu,
                up,
            )
    return Veth(name, owned[1], bridge, "", "", "", "", 0, False)


def _peer(ln: Link, host_veths: dict[int, tuple[Link, str]]) -> tuple[Link, str] | None:
    """The agent's host end of the inner veth ``ln``, if it is one. Each end names the
    other's index: a pair of another namespace's links (a runtime's own plugin) with
    one index alike is not the agent's."""
    peer = host_veths.get(ln.link)
    if peer is None or ln.kind != "veth" or peer[0].link != ln.ifindex:
        return None
    return peer


def _routes(host: Namespace) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """The prefixes of addresses and main-table routes on links Plexus does not own
    (what may stand in a network's way); and the routes through the overlay
    routers (on the transit bridge, with a gateway)."""
    ifname = {ln.ifindex: ln.ifname for ln in host.links}
    owned = {
        ln.ifindex
        for ln in host.links
        if ln.ifname.startswith(names.IF_PREFIX) and names.parse_alias(ln.alias) is not None
    }
    found: set[tuple[str, str]] = set()
    through: dict[str, str] = {}
    for index, cidrs in host.addrs.items():
        if index not in owned:
            for cidr in cidrs:
                net = ipaddress.IPv4Network(cidr, strict=False)
                found.add((str(net), ifname.get(index, "?")))
    for r in host.routes:
        if not r.dst:
            continue
        prefix = f"{r.dst}/{r.dst_len}"
        if r.oif not in owned:
            found.add((prefix, ifname.get(r.oif or 0, "?")))
        elif ifname.get(r.oif or 0) == names.TRANSIT_BRIDGE and r.gateway:
            through[prefix] = r.gateway
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
