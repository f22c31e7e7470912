"""The Linux driver: pyroute2 ``AsyncIPRoute`` for links, addresses, routes, FDB and
neighbours; ``pyroute2.netns`` for namespaces. Netlink errors are translated here,
once: EEXIST on an add and ENOENT/ENODEV on a delete are success."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from proto import names

from .. import plan as p
from ..model import Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from . import KernelError, apply_each, nft
from .batch import Entry, NetlinkBatch
from .netns import in_netns, listnetns, netlink_socket
from .netns import remove as remove_netns
from .view import apply_to

NETLINK_ROUTE = 0
NUD_PERMANENT = 0x80
IFF_UP = 0x1
GONE = {errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL}
#: the sysctls the agent reads back (and sets when a network needs them)
SYSCTLS = ("net.ipv4.ip_forward",)


#: ARP retry interval of a compartment's interfaces (the kernel's default is 1 s)
ARP_RETRANS_MS = 100


def _tune_router() -> int:
    """A router namespace forwards (between its gateway and its way out); otherwise a
    compartment's."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    return _tune_compartment()


def _tune_compartment() -> int:
    """Interfaces made in the compartment from now on announce their address when they
    come up (a gratuitous ARP): peers on the same host's bridge learn it at once.
    Returns a netlink socket of the compartment."""
    Path("/proc/sys/net/ipv4/conf/default/arp_notify").write_text("1")
    return netlink_socket()


def _tune_interface(ifname: str) -> Callable[[], int]:
    """Retry an unanswered ARP after 100 ms, not 1 s: a peer that asked for an endpoint
    before it existed reaches it at most 100 ms after its own host's agent added the
    neighbour entry the overlay's ARP proxy answers from. (The proxy consumes ARP
    requests, gratuitous ones too: an announcement cannot cross the overlay.) Per
    interface: ``neigh/default`` exists in the initial namespace only. Returns the
    interface's index."""

    def tune() -> int:
        path = Path(f"/proc/sys/net/ipv4/neigh/{ifname}/retrans_time_ms")
        path.write_text(str(ARP_RETRANS_MS))
        return socket.if_nametoindex(ifname)  # no netlink round trip for it

    return tune


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _kind(link: Any) -> str | None:
    kind: str | None = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return kind


class LinuxKernel:
    """Owns the objects of ``host``; runs in the host's (current) network namespace."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.prefix = names.netns_prefix(host)
        self._ipr: AsyncIPRoute | None = None
        self._ns: dict[str, AsyncIPRoute] = {}
        #: the last full read, with this driver's successful actions since applied to
        #: it (None: the next read is a full one)
        self._view: HostState | None = None
        self._batch = NetlinkBatch()

    async def _root(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
        return self._ipr

    async def _in(self, ns: str, fd: int | None = None) -> AsyncIPRoute:
        ipr = self._ns.get(ns)
        if ipr is None:
            if fd is None:
                fd = await in_netns(ns, netlink_socket)
            ipr = self._ns[ns] = AsyncIPRoute(fileno=fd)
        elif fd is not None:
            os.close(fd)
        return ipr

    def _forget(self, ns: str) -> None:
        ipr = self._ns.pop(ns, None)
        if ipr is not None:
            ipr.close()

    async def close(self) -> None:
        for ns in list(self._ns):
            self._forget(ns)
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        self._batch.close()

    # -- read --------------------------------------------------------------------------

    async def read(self, full: bool = True) -> HostState:
        """With ``full=False``, the driver's view (no kernel call): the state of its last
        full read plus what its own actions since did. The state returned is the view:
        the caller must not change it, and it changes as actions are applied."""
        if not full and self._view is not None:
            return self._view
        self._view = None
        self._view = await self._read()
        return self._view

    async def _read(self) -> HostState:
        st = HostState()
        st.namespaces = {n for n in listnetns() if n.startswith(self.prefix)}
        ipr = await self._root()
        links = [ln async for ln in await ipr.link("dump")]
        by_index = {ln["index"]: ln for ln in links}
        addrs: dict[int, list[str]] = {}
        async for a in await ipr.addr("dump", family=2):
            addrs.setdefault(a["index"], []).append(f"{a.get('address')}/{a['prefixlen']}")
        st.foreign, st.host_routes = await self._routes(ipr, links, addrs)
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
            if kind == "bridge" and _kind(ln) == "bridge":
                uplink = foreign_ports.get(ln["index"])
                # an uplinked bridge holds the uplink's own addresses, not a gateway's
                own = [] if uplink else addrs.get(ln["index"], [])
                st.bridges[name] = Bridge(
                    name, ident, ln.get("mtu"), own[0] if own else None, uplink
                )
            elif kind == "vxlan" and _kind(ln) == "vxlan":
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
            elif kind == "veth" and _kind(ln) == "veth":
                host_veths[ln["index"]] = (ln, master_name)
        # the inner ends: IFLA_LINK of a peer names the host-side ifindex
        for ns in sorted(st.namespaces):
            try:
                inner = await self._in(ns)
                ns_links = [ln async for ln in await inner.link("dump")]
                ns_addrs: dict[int, list[str]] = {}
                async for a in await inner.addr("dump", family=2):
                    ns_addrs.setdefault(a["index"], []).append(
                        f"{a.get('address')}/{a['prefixlen']}"
                    )
                gateway = None
                async for r in await inner.route("dump", family=2, table=254):
                    if r["dst_len"] == 0 and r.get("gateway"):
                        gateway = r.get("gateway")
                st.routes[ns] = gateway
                if names.is_router_netns(ns):
                    rules, _ = await nft.read(ns)
                    if rules is not None:  # as the view has it: no entry, no table
                        st.ns_rules[ns] = rules
            except (NetlinkError, OSError) as e:
                raise KernelError("read", ns, getattr(e, "code", 0) or 0, str(e)) from None
            for ln in ns_links:
                peer = host_veths.get(ln.get("link") or 0)
                if peer is None or _kind(ln) != "veth":
                    continue
                host_ln, bridge = peer
                owned = names.parse_alias(host_ln.get("ifalias"))
                assert owned is not None
                own = ns_addrs.get(ln["index"], [])
                up = bool(host_ln["flags"] & IFF_UP) and bool(ln["flags"] & IFF_UP)
                st.veths[host_ln.get("ifname")] = Veth(
                    name=host_ln.get("ifname"),
                    endpoint=owned[1],
                    bridge=bridge,
                    netns=ns,
                    inner=ln.get("ifname"),
                    mac=ln.get("address"),
                    address=own[0] if own else "",
                    mtu=ln.get("mtu"),
                    up=up,
                )
        # host-side veths whose peer is in no owned namespace are stale halves
        seen = {v.name for v in st.veths.values()}
        for ln, bridge in host_veths.values():
            if ln.get("ifname") not in seen:
                owned = names.parse_alias(ln.get("ifalias"))
                assert owned is not None
                st.veths[ln.get("ifname")] = Veth(
                    ln.get("ifname"), owned[1], bridge, "", "", "", "", 0, False
                )
        if vx_index:
            try:
                fdb = await asyncio.to_thread(self._batch.dump_neigh, socket.AF_BRIDGE)
                neigh = await asyncio.to_thread(self._batch.dump_neigh, socket.AF_INET)
            except OSError as e:
                raise KernelError("read", "neighbours", e.errno or 0, str(e)) from None
            for ifindex, _, mac, dst in fdb:
                dev = vx_index.get(ifindex)
                if dev is not None and mac and dst:
                    st.fdb.add(Fdb(dev, mac, dst))
            for ifindex, state, mac, dst in neigh:
                dev = vx_index.get(ifindex)
                if dev is not None and state & NUD_PERMANENT and mac and dst:
                    st.neigh[dev, dst] = Neigh(dev, dst, mac)
        st.rules, st.counters = await nft.read()
        for key in SYSCTLS:
            with contextlib.suppress(OSError):
                st.sysctls[key] = _sysctl_path(key).read_text().strip()
        return st

    @staticmethod
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

    # -- apply -------------------------------------------------------------------------

    async def apply(self, action: p.Action) -> None:
        op = type(action).__name__
        view, self._view = self._view, None  # a failure leaves the kernel unknown
        try:
            await self._apply(action)
        except NetlinkError as e:
            raise KernelError(op, _obj(action), e.code, str(e)) from None
        except OSError as e:
            raise KernelError(op, _obj(action), e.errno or 0, str(e)) from None
        if view is not None:
            try:
                apply_to(view, action)
            except KernelError:  # the view and the kernel disagree: read in full next
                return
            self._view = view

    async def apply_many(self, actions: Sequence[p.Action]) -> list[KernelError | None]:
        """Runs of FDB and neighbour actions go to the kernel as batches (one send per
        1,024 requests); every other action is applied on its own, in order."""
        outcomes: list[KernelError | None] = []
        run: list[p.Action] = []
        for action in [*actions, None]:
            if isinstance(action, BATCHED):
                run.append(action)
                continue
            if run:
                outcomes += await self._apply_batch(run)
                run = []
            if action is not None:
                outcomes += await apply_each(self, [action])
        return outcomes

    async def _apply_batch(self, run: list[p.Action]) -> list[KernelError | None]:
        view, self._view = self._view, None
        index: dict[str, int | KernelError] = {}
        for dev in {_device(a) for a in run}:
            try:
                index[dev] = await self._index(dev)
            except KernelError as e:
                index[dev] = e
        outcomes: list[KernelError | None] = [None] * len(run)
        entries: list[Entry] = []
        sent: list[int] = []
        for i, action in enumerate(run):
            dev = _device(action)
            ifindex = index[dev]
            if isinstance(ifindex, KernelError):
                outcomes[i] = KernelError(type(action).__name__, dev, ifindex.errno, "no device")
                continue
            entries.append(_entry(action, ifindex))
            sent.append(i)
        try:
            codes = await asyncio.to_thread(self._batch.run, entries)
        except OSError as e:  # the socket failed: none of the batch is known done
            code = e.errno or errno.EIO
            return [KernelError(type(a).__name__, _obj(a), code, str(e)) for a in run]
        for i, code in zip(sent, codes, strict=True):
            action = run[i]
            # ensure semantics, as apply(): an entry already there / already gone is done
            if isinstance(action, p.AddFdb):
                ok = {0, errno.EEXIST}
            elif isinstance(action, p.AddNeigh):
                ok = {0}
            else:
                ok = {0} | GONE
            if code not in ok:
                outcomes[i] = KernelError(
                    type(action).__name__, _obj(action), code, os.strerror(code)
                )
        if view is not None and not any(outcomes):
            try:
                for action in run:
                    apply_to(view, action)
            except KernelError:
                return outcomes
            self._view = view
        return outcomes

    async def _index(self, name: str, ipr: AsyncIPRoute | None = None) -> int:
        if ipr is None:  # the host's namespace, the event loop thread's: an ioctl
            try:
                return socket.if_nametoindex(name)
            except OSError:
                raise KernelError("lookup", name, errno.ENODEV, "no such device") from None
        found = await ipr.link_lookup(ifname=name)
        if not found:
            raise KernelError("lookup", name, errno.ENODEV, "no such device")
        return int(found[0])

    @asynccontextmanager
    async def _ensure(self, *ok: int) -> AsyncIterator[None]:
        try:
            yield
        except NetlinkError as e:
            if e.code not in ok:
                raise

    async def _apply(self, action: p.Action) -> None:
        ipr = await self._root()
        match action:
            case p.AddNamespace(name):
                new = name not in listnetns()
                tune = _tune_router if names.is_router_netns(name) else _tune_compartment
                fd = await in_netns(name, tune, create=new)
                inner = await self._in(name, fd)
                await inner.link("set", index=1, state="up")
            case p.DelNamespace(name):
                self._forget(name)
                if name in listnetns():
                    await asyncio.to_thread(remove_netns, name)
            case p.AddBridge(br):
                async with self._ensure(errno.EEXIST):
                    await ipr.link("add", ifname=br.name, kind="bridge")
                await self._set_bridge(br, None)
            case p.SetBridge(old, new):
                await self._set_bridge(new, old)
            case p.DelBridge(name):
                async with self._ensure(*GONE):
                    idx = await self._index(name)
                    for port in await self._foreign_ports(idx):
                        await self._release(idx, port)
                    await ipr.link("del", index=idx)
            case p.DelVxlan(name) | p.DelVeth(name):
                async with self._ensure(*GONE):
                    await ipr.link("del", index=await self._index(name))
            case p.AddVxlan(vx):
                async with self._ensure(errno.EEXIST):
                    await ipr.link(
                        "add",
                        ifname=vx.name,
                        kind="vxlan",
                        vxlan_id=vx.vni,
                        vxlan_local=vx.local,
                        vxlan_port=vx.port,
                        vxlan_learning=0,
                        vxlan_proxy=1,
                        mtu=vx.mtu,
                    )
                idx = await self._index(vx.name)
                await ipr.link(
                    "set",
                    index=idx,
                    ifalias=names.alias("vxlan", vx.network),
                    master=await self._index(vx.bridge),
                    state="up",
                )
            case p.AddVeth(v):
                await self._add_veth(v)
            case p.SetRoute(ns, gw):
                inner = await self._in(ns)
                async with self._ensure(*GONE):
                    await inner.route("del", dst="0.0.0.0/0", table=254)
                if gw is not None:
                    await inner.route("add", dst="0.0.0.0/0", gateway=gw, table=254)
            case p.AddFdb(f):
                async with self._ensure(errno.EEXIST):
                    await ipr.fdb(
                        "append",
                        ifindex=await self._index(f.device),
                        lladdr=f.mac,
                        dst=f.dst,
                        state=NUD_PERMANENT,
                    )
            case p.DelFdb(f):
                async with self._ensure(*GONE):
                    await ipr.fdb(
                        "del", ifindex=await self._index(f.device), lladdr=f.mac, dst=f.dst
                    )
            case p.AddNeigh(n):
                await ipr.neigh(
                    "replace",
                    ifindex=await self._index(n.device),
                    dst=n.ip,
                    lladdr=n.mac,
                    state=NUD_PERMANENT,
                )
            case p.DelNeigh(n):
                async with self._ensure(*GONE):
                    await ipr.neigh(
                        "del", ifindex=await self._index(n.device), dst=n.ip, lladdr=n.mac
                    )
            case p.SetRules(rules, ns):
                await nft.replace(rules, ns)
            case p.DelRules(ns):
                await nft.delete(ns)
            case p.SetHostRoute(prefix, via):
                await ipr.route("replace", dst=prefix, gateway=via, table=254)
            case p.DelHostRoute(prefix):
                async with self._ensure(*GONE):
                    await ipr.route("del", dst=prefix, table=254)
            case p.SetSysctl(key, value):
                if key not in SYSCTLS:
                    raise KernelError("SetSysctl", key, errno.EPERM, "not a sysctl Plexus owns")
                await asyncio.to_thread(_sysctl_path(key).write_text, value)

    async def _set_bridge(self, br: Bridge, old: Bridge | None) -> None:
        ipr = await self._root()
        idx = await self._index(br.name)
        await ipr.link(
            "set", index=idx, ifalias=names.alias("bridge", br.network), mtu=br.mtu, state="up"
        )
        if old is not None and old.address and old.address != br.address:
            ip, _, plen = old.address.partition("/")
            async with self._ensure(*GONE):
                await ipr.addr("del", index=idx, address=ip, prefixlen=int(plen))
        if br.address and (old is None or old.address != br.address):
            ip, _, plen = br.address.partition("/")
            async with self._ensure(errno.EEXIST):
                await ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
        if old is not None and old.uplink and old.uplink != br.uplink:
            await self._release(idx, old.uplink)
        if br.uplink and (old is None or old.uplink != br.uplink):
            await self._attach(idx, br.uplink)

    # -- transparent uplinks -----------------------------------------------------------

    async def _foreign_ports(self, bridge: int) -> list[str]:
        ipr = await self._root()
        return [
            ln.get("ifname")
            async for ln in await ipr.link("dump")
            if ln.get("master") == bridge and names.parse_alias(ln.get("ifalias")) is None
        ]

    async def _move(self, src: int, dst: int) -> None:
        """The IPv4 addresses of ``src`` and its routes through a gateway, onto ``dst``:
        added there first, removed from ``src`` after, so the host stays reachable."""
        ipr = await self._root()
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
            async with self._ensure(errno.EEXIST):
                await ipr.addr("add", index=dst, address=ip, prefixlen=plen)
        for ip, plen in addrs:
            async with self._ensure(*GONE):
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

    async def _attach(self, bridge: int, uplink: str) -> None:
        """Enslave the uplink; its MAC, addresses and routes move to the bridge."""
        ipr = await self._root()
        found = await ipr.link_lookup(ifname=uplink)
        if not found:
            raise KernelError("attach", uplink, errno.ENODEV, "the uplink does not exist")
        up = found[0]
        (link,) = tuple(await ipr.link("get", index=up))
        if link.get("master") not in (None, 0, bridge):
            raise KernelError("attach", uplink, errno.EBUSY, "the uplink is in another bridge")
        await ipr.link("set", index=bridge, address=link.get("address"))
        await ipr.link("set", index=up, master=bridge, state="up")
        await self._move(up, bridge)

    async def _release(self, bridge: int, uplink: str) -> None:
        """Give the uplink its addresses and routes back and free it from the bridge."""
        ipr = await self._root()
        found = await ipr.link_lookup(ifname=uplink)
        if not found:
            return
        await ipr.link("set", index=found[0], master=0)
        await self._move(bridge, found[0])

    async def _add_veth(self, v: Veth) -> None:
        """One request makes the pair: the host end with its MTU in its bridge, the inner
        end in the compartment with its MAC and MTU (six round trips per compartment,
        not ten). Names already taken (a pass cut short, an unowned leftover): the
        leftover inner end goes, and what the add would have set is set on the pair."""
        ipr = await self._root()
        inner = await self._in(v.netns)
        bridge = await self._index(v.bridge)
        peer = {"ifname": v.inner, "net_ns_fd": v.netns, "address": v.mac, "mtu": v.mtu}
        try:
            await ipr.link(
                "add", ifname=v.name, kind="veth", mtu=v.mtu, master=bridge, state="up", peer=peer
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            stale = await inner.link_lookup(ifname=v.inner)
            if stale:
                await inner.link("del", index=stale[0])
            async with self._ensure(errno.EEXIST):
                await ipr.link(
                    "add", ifname=v.name, kind="veth", mtu=v.mtu, master=bridge, peer=peer
                )
            await ipr.link("set", index=await self._index(v.name), mtu=v.mtu, master=bridge)
            in_idx = await self._index(v.inner, inner)
            await inner.link("set", index=in_idx, address=v.mac, mtu=v.mtu)
        idx = await self._index(v.name)
        await ipr.link("set", index=idx, ifalias=names.alias("veth", v.endpoint), state="up")
        in_idx = await in_netns(v.netns, _tune_interface(v.inner))
        ip, _, plen = v.address.partition("/")
        async with self._ensure(errno.EEXIST):
            await inner.addr("add", index=in_idx, address=ip, prefixlen=int(plen))
        # up last, with its address: the namespace's arp_notify then announces it
        await inner.link("set", index=in_idx, state="up")


BATCHED = (p.AddFdb, p.DelFdb, p.AddNeigh, p.DelNeigh)


def _device(action: p.Action) -> str:
    """The VXLAN device of a batched action."""
    match action:
        case p.AddFdb(f) | p.DelFdb(f):
            return f.device
        case p.AddNeigh(n) | p.DelNeigh(n):
            return n.device
    raise TypeError(f"not a batched action: {action!r}")


def _entry(action: p.Action, ifindex: int) -> Entry:
    """The batch request of a batched action."""
    match action:
        case p.AddFdb(f) | p.DelFdb(f):
            return Entry(True, isinstance(action, p.AddFdb), ifindex, f.mac, f.dst)
        case p.AddNeigh(n) | p.DelNeigh(n):
            return Entry(False, isinstance(action, p.AddNeigh), ifindex, n.mac, n.ip)
    raise TypeError(f"not a batched action: {action!r}")


def _obj(action: p.Action) -> str:
    if isinstance(action, p.SetRules | p.DelRules):
        return "nftables table inet plexus" + (f" in {action.netns}" if action.netns else "")
    if isinstance(action, p.SetHostRoute | p.DelHostRoute):
        return f"route {action.prefix}"
    if isinstance(action, p.SetSysctl):
        return action.key
    for attr in ("name", "bridge", "vxlan", "veth", "fdb", "neigh", "netns", "new"):
        value = getattr(action, attr, None)
        if value is not None:
            return str(getattr(value, "name", value))
    return repr(action)
