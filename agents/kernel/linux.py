"""The Linux driver: pyroute2 ``AsyncIPRoute`` for links, addresses, routes, FDB and
neighbours; namespaces without forking (:mod:`.netns`). Netlink and OS errors are
translated here, once, into :class:`~agents.errors.KernelError`: EEXIST on an add and
ENOENT/ENODEV on a delete are success (:func:`.netlink.ensure`).

Beside it: :mod:`.read`, :mod:`.dumps`, :mod:`.uplink`, :mod:`.batch`, :mod:`.dellinks`,
:mod:`.runs`, :mod:`.veths`, :mod:`.nft`."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
from collections.abc import Collection, Sequence
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from proto import names

from .. import plan as p
from ..errors import KernelError
from ..model import Bridge, HostState
from . import apply_each, nft, resolv, uplink
from .announce import Announcer
from .batch import NetlinkBatch, apply_run
from .dellinks import delete_veths
from .netlink import GONE, NUD_PERMANENT, ensure, index, subject
from .netns import in_netns, is_there, listnetns, netlink_socket, release
from .netns import remove as remove_netns
from .read import SYSCTLS, read_state, sysctl_path
from .runs import add_spaces, run_of, set_routes
from .tune import tune_compartment, tune_router
from .veths import add_one, add_veths
from .view import apply_all, apply_to, rescope


class LinuxKernel:
    """Owns the objects of ``host``; runs in the host's (current) network namespace.

    It keeps a *view*: its cache of the kernel's actual state (the last full read, with
    its own successful actions since applied to it by :func:`.view.apply_to`), so that
    a pass woken by a message reads no kernel state. The view is not change tracking
    (what changed in the desired state since the last clean pass is the agent's
    :class:`~agents.desired.Changes`): it is what the kernel holds, and it is dropped,
    for a full read next, whenever an action fails or it disagrees with an action."""

    def __init__(self, host: str, etc_netns: Path = resolv.DEFAULT_BASE) -> None:
        self.host = host
        self.prefix = names.netns_prefix(host)
        #: where namespaces' own files are (``ip netns exec`` bind-mounts them)
        self.etc_netns = etc_netns
        self._ipr: AsyncIPRoute | None = None
        #: pyroute2 sockets of namespaces, for what is done the slow way (a run on a
        #: thread of its own, :mod:`.runs`, and a read, :mod:`.dumps`, need none)
        self._ns: dict[str, AsyncIPRoute] = {}
        #: the view (see the class): the last full read, with this driver's successful
        #: actions since applied to it (None: unknown, the next read is a full one)
        self._view: HostState | None = None
        self._batch = NetlinkBatch()
        self._announcer = Announcer()

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
        self._announcer.close()

    # -- read --------------------------------------------------------------------------

    async def read(self, full: bool = True, runtime: Collection[str] = ()) -> HostState:
        """With ``full=False``, the driver's view (no kernel call): the state of its last
        full read plus what its own actions since did. The state returned is the view:
        the caller must not change it, and it changes as actions are applied. A read
        that fails raises :class:`~agents.errors.KernelError` (the netlink and OS
        errors a namespace's or the entries' read did not already translate)."""
        if not full and self._view is not None:
            if self._view.runtime or runtime:
                rescope(self._view, runtime, is_there)
                self._let_go(self._view)
            return self._view
        known, self._view = self._view, None
        try:
            state = await read_state(self.prefix, self._batch, runtime, known)
            state.resolv = await asyncio.to_thread(resolv.read, self.etc_netns, self.prefix)
        except NetlinkError as e:
            raise KernelError("read", self.host, e.code, str(e)) from None
        except OSError as e:
            raise KernelError("read", self.host, e.errno or 0, str(e)) from None
        self._let_go(state)
        self._view = state
        return state

    def _let_go(self, state: HostState) -> None:
        """A socket or a descriptor of a runtime's namespace keeps that namespace (and the
        agent's interface in it) alive: both go once it is no longer asked for or there.
        A socket of an own namespace no longer there (removed by hand) is of that gone
        namespace: it goes too, so that one made again gets its own."""
        there = state.runtime | state.namespaces
        for ns in [ns for ns in self._ns if ns not in there]:
            self._forget(ns)
        release(state.runtime)

    # -- apply -------------------------------------------------------------------------

    async def apply(self, action: p.Action) -> None:
        op = type(action).__name__
        view, self._view = self._view, None  # a failure leaves the kernel unknown
        try:
            await self._apply(action)
        except NetlinkError as e:
            raise KernelError(op, subject(action), e.code, str(e)) from None
        except OSError as e:
            raise KernelError(op, subject(action), e.errno or 0, str(e)) from None
        if view is not None:
            try:
                apply_to(view, action)
            except KernelError:  # the view and the kernel disagree: read in full next
                return
            self._view = view

    async def apply_many(self, actions: Sequence[p.Action]) -> list[KernelError | None]:
        """FDB/neighbour runs in batches, veth delete runs as one (:mod:`.dellinks`), veth
        add runs on a thread of their own (:mod:`.veths`)."""
        outcomes: list[KernelError | None] = []
        for kind, group in itertools.groupby(actions, run_of):
            run = list(group)
            if kind is not None and (kind != "dellink" or len(run) > 1):
                outcomes += await self._apply_run(kind, run)
            else:
                outcomes += await apply_each(self, run)
        return outcomes

    async def _apply_run(self, kind: str, run: list[p.Action]) -> list[KernelError | None]:
        view, self._view = self._view, None
        if kind == "batch":
            outcomes = await apply_run(self._batch, run)
        elif kind in ("addveth", "route", "netns"):
            outcomes = await self._on_thread(kind, run)
        else:
            outcomes = await delete_veths(await self._root(), run)  # type: ignore[arg-type]
        if view is not None and not any(outcomes) and not any(apply_all(view, run)):
            self._view = view  # else the view and the kernel disagree: read in full next
        return outcomes

    async def _on_thread(self, kind: str, run: list[p.Action]) -> list[KernelError | None]:
        """:mod:`.runs`; what a run cannot do, :meth:`apply` does after it."""

        async def slow(again: Sequence[p.Action]) -> list[KernelError | None]:
            return await apply_each(self, again)

        if kind == "addveth":
            return await add_veths(run, slow)  # type: ignore[arg-type]
        if kind == "route":
            return await set_routes(run, slow)  # type: ignore[arg-type]
        return await add_spaces(run, slow)  # type: ignore[arg-type]

    async def _apply(self, action: p.Action) -> None:
        ipr = await self._root()
        match action:
            case p.AddNamespace(name):
                new = name not in listnetns()
                tune = tune_router if names.is_router_netns(name) else tune_compartment
                fd = await in_netns(name, tune, create=new)
                inner = await self._in(name, fd)
                if not new:  # one made here has lo up already (netns._enter)
                    await inner.link("set", index=1, state="up")
            case p.DelNamespace(name):
                self._forget(name)
                if name in listnetns():
                    await asyncio.to_thread(remove_netns, name)
                # its resolver file goes with it (the plan removes it first, unless it
                # was removed by hand meanwhile: then the directory is left empty)
                await asyncio.to_thread(resolv.remove, self.etc_netns, name)
            case p.SetResolv(ns, content):
                await asyncio.to_thread(resolv.write, self.etc_netns, ns, content)
            case p.DelResolv(ns):
                await asyncio.to_thread(resolv.remove, self.etc_netns, ns)
            case p.AddBridge(br):
                async with ensure(errno.EEXIST):
                    await ipr.link("add", ifname=br.name, kind="bridge")
                await self._set_bridge(br, None)
            case p.SetBridge(old, new):
                await self._set_bridge(new, old)
            case p.DelBridge(name):
                async with ensure(*GONE):
                    idx = await index(name)
                    for port in await uplink.foreign_ports(ipr, idx):
                        await uplink.release(ipr, idx, port)
                    await ipr.link("del", index=idx)
            case p.DelVxlan(name) | p.DelVeth(name):
                async with ensure(*GONE):
                    await ipr.link("del", index=await index(name))
            case p.AddVxlan(vx):
                async with ensure(errno.EEXIST):
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
                idx = await index(vx.name)
                await ipr.link(
                    "set",
                    index=idx,
                    ifalias=names.alias("vxlan", vx.network),
                    master=await index(vx.bridge),
                    state="up",
                )
            case p.AddVeth(v):
                await add_one(ipr, self._in, v)
            case p.SetRoute(ns, gw, was) if ns.startswith("/"):
                # a runtime's namespace: only the agent's own route goes, by its gateway;
                # a default route of the runtime's (another plugin's) stays, and is
                # reported in the way
                inner = await self._in(ns)
                if was is not None:
                    async with ensure(*GONE):
                        await inner.route("del", dst="0.0.0.0/0", gateway=was, table=254)
                if gw is not None:
                    try:
                        await inner.route("add", dst="0.0.0.0/0", gateway=gw, table=254)
                    except NetlinkError as e:
                        if e.code != errno.EEXIST:
                            raise
                        raise NetlinkError(
                            errno.EEXIST, f"a default route not Plexus's is in {ns}"
                        ) from None
            case p.SetRoute(ns, gw):
                inner = await self._in(ns)
                if gw is None:
                    async with ensure(*GONE):
                        await inner.route("del", dst="0.0.0.0/0", table=254)
                else:  # one request, not a delete and an add
                    await inner.route("replace", dst="0.0.0.0/0", gateway=gw, table=254)
            case p.AddFdb(f):
                async with ensure(errno.EEXIST):
                    await ipr.fdb(
                        "append",
                        ifindex=await index(f.device),
                        lladdr=f.mac,
                        dst=f.dst,
                        state=NUD_PERMANENT,
                    )
            case p.DelFdb(f):
                async with ensure(*GONE):
                    await ipr.fdb("del", ifindex=await index(f.device), lladdr=f.mac, dst=f.dst)
            case p.AddNeigh(n):
                await ipr.neigh(
                    "replace",
                    ifindex=await index(n.device),
                    dst=n.ip,
                    lladdr=n.mac,
                    state=NUD_PERMANENT,
                )
            case p.DelNeigh(n):
                async with ensure(*GONE):
                    await ipr.neigh("del", ifindex=await index(n.device), dst=n.ip, lladdr=n.mac)
            case p.SetRules(rules, ns, elements):
                await nft.replace(rules, ns, dict(elements))
            case p.SetElements(changes):
                await nft.update(changes)
            case p.DelRules(ns):
                await nft.delete(ns)
            case p.SetHostRoute(prefix, via):
                await ipr.route("replace", dst=prefix, gateway=via, table=254)
            case p.DelHostRoute(prefix):
                async with ensure(*GONE):
                    await ipr.route("del", dst=prefix, table=254)
            case p.Announce(bridge, ip, mac):
                self._announcer.send(bridge, ip, mac)
            case p.SetSysctl(key, value):
                if key not in SYSCTLS:
                    raise KernelError("SetSysctl", key, errno.EPERM, "not a sysctl Plexus owns")
                await asyncio.to_thread(sysctl_path(key).write_text, value)

    async def _set_bridge(self, br: Bridge, old: Bridge | None) -> None:
        ipr = await self._root()
        idx = await index(br.name)
        await ipr.link(
            "set", index=idx, ifalias=names.alias("bridge", br.network), mtu=br.mtu, state="up"
        )
        if old is not None and old.address and old.address != br.address:
            ip, _, plen = old.address.partition("/")
            async with ensure(*GONE):
                await ipr.addr("del", index=idx, address=ip, prefixlen=int(plen))
        if br.address and (old is None or old.address != br.address):
            ip, _, plen = br.address.partition("/")
            async with ensure(errno.EEXIST):
                await ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
        if old is not None and old.uplink and old.uplink != br.uplink:
            await uplink.release(ipr, idx, old.uplink)
        if br.uplink and (old is None or old.uplink != br.uplink):
            await uplink.attach(ipr, idx, br.uplink)
        if br.filtered != (old.filtered if old is not None else False):
            # this bridge's IPv4 through the host's netfilter hooks (the ACL), others' not
            await ipr.link("set", index=idx, kind="bridge", br_nf_call_iptables=int(br.filtered))
