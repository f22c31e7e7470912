"""From the wire documents to the kernel state a host must hold.

:func:`desired_state` is pure: the host's desired document and each overlay
network's remote entries (:class:`Overlay`) in, a :class:`HostState` out.
:class:`Changes` is the one owner of "what changed since the last clean pass": it
hands out the tables (which report to it what they change), keeps each network's
remote entries current by those changes, and tells the planner which entries it must
diff (:class:`~agents.plan.Entries`), or that it must diff them all."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

import proto
from proto import names, transit
from proto.rows import Row

from .acl import Compiled, compile_acl
from .model import FLOOD_MAC, HANDOVER, Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from .plan import Entries
from .resolv import resolv_conf
from .rules import host_rules, router_masquerade
from .tables import Table

VXLAN_PORT = 4789
TRANSIT_MTU = 1500
TRANSIT_ADDRESS = f"{transit.HOST}/{transit.SUBNET.prefixlen}"


class Overlay:
    """The remote entries of one overlay network a host must hold: a static FDB entry
    and a neighbour per remote endpoint, a flood entry per remote VTEP. Made from a
    whole table (:meth:`of`), then kept current by the ids of the records that changed
    (:meth:`update`, which returns the entries it changed), so a change costs work for
    that change, not for the whole table. It keeps no record of what changed: that is
    :class:`Changes`'s."""

    def __init__(self, host: str, device: str, vtep: str) -> None:
        self.key = (host, device, vtep)
        self.fdb: set[Fdb] = set()
        self.neigh: dict[tuple[str, str], Neigh] = {}
        #: record id → the record its entries were made from (shared with the table)
        self._of: dict[str, Row] = {}
        self._vteps: dict[str, int] = {}

    @classmethod
    def of(
        cls,
        host: str,
        network: str,
        vtep: str,
        records: Mapping[str, Row],
        known: HostState | None = None,
    ) -> Overlay:
        """The remote entries of ``network``'s whole table, on ``host`` at ``vtep``;
        where ``known`` (the kernel's state, just read) holds an equal entry, that one
        (memory only: a host's tens of thousands of entries are then held once)."""
        ov = cls(host, names.vxlan(network), vtep)
        ov._build(records, known)
        return ov

    def _build(self, records: Mapping[str, Row], known: HostState | None) -> None:
        """Fill an empty overlay from a whole table (:meth:`update` with every id, with
        no record of what changed: everything did). In comprehensions, the entries made
        as tuples of their class: a cold start makes tens of thousands."""
        host, vx, vtep = self.key
        new = tuple.__new__
        remote = [
            r for r in records.values() if r.vtep is not None and r.vtep != vtep and r.host != host
        ]
        self._of = {r.id: r for r in remote}
        counts = Counter([r.vtep for r in remote])
        self._vteps = vteps = {dst: n for dst, n in counts.items() if dst is not None}
        fdb: set[Fdb]
        neigh: dict[tuple[str, str], Neigh]
        same = {f: f for f in known.fdb if f.device == vx} if known is not None else {}
        had = known.neigh if known is not None else {}
        if not same:  # the kernel holds none of the device's entries (a cold start)
            fdb = {new(Fdb, (vx, r.mac, r.vtep)) for r in remote}
            neigh = {(vx, r.ip): new(Neigh, (vx, r.ip, r.mac)) for r in remote}
        else:  # the kernel's equal entries taken as ours, each one made dropped at once
            fdb = {same.get(f, f) for f in (new(Fdb, (vx, r.mac, r.vtep)) for r in remote)}
            neigh = {}
            for r in remote:
                key = (vx, r.ip)
                n = had.get(key)
                neigh[key] = n if n is not None and n.mac == r.mac else new(Neigh, (*key, r.mac))
        fdb.update(new(Fdb, (vx, FLOOD_MAC, dst)) for dst in vteps)
        self.fdb, self.neigh = fdb, neigh

    def update(
        self,
        records: Mapping[str, Row],
        ids: Iterable[str],
        fdb_changed: set[Fdb],
        neigh_changed: set[tuple[str, str]],
    ) -> None:
        """Follow the records ``ids`` (changed, added or gone from ``records``); the FDB
        entries and neighbour keys this changes are added to ``fdb_changed`` and
        ``neigh_changed``."""
        host, vx, vtep = self.key
        for rid in ids:
            old = self._of.pop(rid, None)
            if old is not None:
                assert old.vtep is not None
                fdb, key = Fdb(vx, old.mac, old.vtep), (vx, old.ip)
                self.fdb.discard(fdb)
                fdb_changed.add(fdb)
                neigh_changed.add(key)
                if self.neigh.get(key) == Neigh(vx, old.ip, old.mac):  # not taken over
                    del self.neigh[key]
                self._count(old.vtep, -1, fdb_changed)
            rec = records.get(rid)
            if rec is None or rec.host == host or rec.vtep is None or rec.vtep == vtep:
                continue
            # an address freed and reused in one batch of changes: the live record wins
            # in either order (IPAM never gives one address to two live endpoints)
            fdb, key = Fdb(vx, rec.mac, rec.vtep), (vx, rec.ip)
            self._of[rid] = rec
            self.fdb.add(fdb)
            self.neigh[key] = Neigh(vx, rec.ip, rec.mac)
            fdb_changed.add(fdb)
            neigh_changed.add(key)
            self._count(rec.vtep, 1, fdb_changed)

    def _count(self, dst: str, delta: int, fdb_changed: set[Fdb]) -> None:
        """A flood entry per VTEP with at least one remote endpoint."""
        n = self._vteps.get(dst, 0) + delta
        if n > 0:
            self._vteps[dst] = n
            if n > 1 or delta < 0:
                return
        else:
            self._vteps.pop(dst, None)
        flood = Fdb(self.key[1], FLOOD_MAC, dst)
        if n > 0:
            self.fdb.add(flood)
        else:
            self.fdb.discard(flood)
        fdb_changed.add(flood)


class Changes:
    """What changed since the last clean pass, for one agent: the one owner of it.

    The tables it hands out (:meth:`table`) report the records each change touched
    (:meth:`records`); a pass brings each overlay network's remote entries up to date
    by those (:meth:`remote`: O(change), not O(table)), asks which entries the planner
    must diff (:meth:`scope`) and says how it ended (:meth:`passed`). Until a clean
    pass, after a failed one, or once an overlay was rebuilt, made or dropped, the
    planner diffs every entry."""

    def __init__(self, host: str) -> None:
        self.host = host
        #: each followed overlay network's remote entries (only with a VTEP)
        self.overlays: dict[str, Overlay] = {}
        #: network → ids of the records changed since :meth:`remote` last followed them
        #: (None: a snapshot replaced the table, or the table is new)
        self._ids: dict[str, set[str] | None] = {}
        #: FDB entries and neighbour keys changed since the last clean pass
        self._fdb: set[Fdb] = set()
        self._neigh: set[tuple[str, str]] = set()
        #: any entry may differ (no clean pass yet, a failed one, an overlay rebuilt)
        self._whole = True

    @property
    def settled(self) -> bool:
        """The last pass was complete and clean (the kernel then held the desired
        remote entries), and every entry changed since is known."""
        return not self._whole

    def table(self, network: str) -> Table:
        """A new, empty table of ``network`` that reports its changes here."""
        self._ids[network] = None
        return Table(network, changed=self.records)

    def records(self, network: str, ids: Collection[str] | None) -> None:
        """A table changed the records ``ids`` (None: all of them)."""
        if ids is None:
            self._ids[network] = None
            return
        pending = self._ids.setdefault(network, set())
        if pending is not None:
            pending.update(ids)

    def remote(
        self, tables: Mapping[str, Table], vtep: str | None, known: HostState | None = None
    ) -> dict[str, Overlay]:
        """Bring each network's remote entries up to date with its table: by the
        records that changed, or in full after a snapshot replaced the table (or the
        VTEP changed). Without a VTEP there are none. ``known``: the kernel's state, whose
        equal entries an overlay made in full takes as its own (:meth:`Overlay.of`)."""
        changed, self._ids = self._ids, {}
        if vtep is None:
            self._whole |= bool(self.overlays)
            self.overlays = {}
            return self.overlays
        overlays: dict[str, Overlay] = {}
        if set(self.overlays) != set(tables):
            self._whole = True  # an overlay made or dropped: its entries all changed
        for net, table in tables.items():
            ov = self.overlays.get(net)
            ids = changed.get(net, ())
            if ov is None or ov.key != (self.host, names.vxlan(net), vtep) or ids is None:
                ov = Overlay.of(self.host, net, vtep, table.records, known)
                self._whole = True
            elif ids:
                ov.update(table.records, ids, self._fdb, self._neigh)
            overlays[net] = ov
        self.overlays = overlays
        return overlays

    def scope(self, full: bool) -> Entries | None:
        """The entries the planner must diff: those changed since the last clean pass;
        None (all of them) for a full pass or when not :attr:`settled`."""
        if full or self._whole:
            return None
        return Entries(frozenset(self._fdb), frozenset(self._neigh))

    def passed(self, clean: bool) -> None:
        """A pass ended. ``clean`` (complete, no error): the kernel holds the desired
        entries, and the next pass need diff only those that change from now on."""
        self._fdb.clear()
        self._neigh.clear()
        self._whole = not clean


def router(st: HostState, host: str, net: proto.NetworkSpec) -> None:
    """An overlay network's layer 3 on this host, in a namespace of its own (as
    Neutron's router namespaces): its gateway (``gw``, a port of the network's bridge),
    and with outbound NAT a way out (``up``, a port of the host's transit bridge, whose
    address the host routes to) with a masquerade of its own. Overlays whose subnets
    overlap so never share a routing table or a connection-tracking entry: the host
    sees each router's distinct transit address."""
    ns = names.router_netns(host, net.id)
    st.namespaces.add(ns)
    gw = names.gateway_leg(net.id)
    st.veths[gw] = Veth(
        name=gw,
        endpoint=f"@gw:{net.id}",
        bridge=names.bridge(net.id),
        netns=ns,
        inner="gw",
        mac=names.leg_mac(host, net.id, "gw"),
        address=f"{net.gateway}/{net.prefixlen}",
        mtu=net.mtu,
    )
    if not net.outbound_nat or net.vni is None:
        st.routes[ns] = None
        st.ns_rules[ns] = None
        return
    tb = names.TRANSIT_BRIDGE
    st.bridges[tb] = Bridge(tb, names.TRANSIT_NETWORK, TRANSIT_MTU, TRANSIT_ADDRESS)
    up = names.transit_leg(net.id)
    address = transit.router_address(net.vni)
    st.veths[up] = Veth(
        name=up,
        endpoint=f"@up:{net.id}",
        bridge=tb,
        netns=ns,
        inner="up",
        mac=names.leg_mac(host, net.id, "up"),
        address=f"{address}/{transit.SUBNET.prefixlen}",
        mtu=TRANSIT_MTU,
    )
    st.routes[ns] = transit.HOST
    st.ns_rules[ns] = frozenset({router_masquerade(net)})
    if net.nat_exceptions:  # their untranslated replies come back through the router
        st.host_routes[net.subnet] = address


def desired_state(
    host: str,
    doc: proto.HostDesired,
    remote: Mapping[str, Overlay],
    vtep: str | None,
    allowed_uplinks: Collection[str] = (),
    tables: Mapping[str, Table] | None = None,
    compiled: Compiled | None = None,
) -> HostState:
    """``remote`` maps an overlay network's id to its remote entries (see
    :meth:`Changes.remote`; a network without any has none).

    A transparent network's uplink is a link the agent does not own: it is enslaved only
    when the host's configuration allows it (``allowed_uplinks``); otherwise the bridge
    is made without it and the refusal is in ``refused``.

    ``tables``: the networks' endpoint tables (policies' selectors match their records);
    ``compiled``: the ACL structure of the last document (compiled again when it changed).

    The state returned may share its FDB and neighbour containers with ``remote``: the
    caller must not change it."""
    st = HostState()
    nets = {n.id: n for n in doc.networks}
    for net in doc.networks:
        br = names.bridge(net.id)
        # an overlay's gateway is its router's (see :func:`router`), not the bridge's
        address = (
            f"{net.gateway}/{net.prefixlen}"
            if net.gateway and net.mode in ("nat", "internal")
            else None
        )
        uplink = net.uplink_of(host) if net.mode == "transparent" else None
        if uplink is not None and uplink not in allowed_uplinks:
            st.refused.append(
                f"network {net.id}: uplink {uplink!r} is not in this host's allowed_uplinks"
            )
            uplink = None
        st.bridges[br] = Bridge(br, net.id, net.mtu, address, uplink)
        if net.mode == "overlay" and net.vni is not None and vtep is not None:
            vx = names.vxlan(net.id)
            st.vxlans[vx] = Vxlan(vx, net.id, net.vni, vtep, VXLAN_PORT, net.mtu, br)
            if net.gateway is not None:
                router(st, host, net)
            ov = remote.get(net.id)
            if ov is None:
                continue
            if not st.fdb and not st.neigh:  # shared, not copied: 20,000 entries or more
                st.fdb, st.neigh = ov.fdb, ov.neigh
            else:
                st.fdb, st.neigh = st.fdb | ov.fdb, {**st.neigh, **ov.neigh}
    net_dns = any(n.dns is not None for n in doc.networks)  # most hosts: none
    for comp in doc.compartments:
        if comp.handover:
            handover(st, comp, nets)
            continue
        if comp.netns is None:
            ns = names.netns(host, comp.id)
            st.namespaces.add(ns)
        else:
            ns = names.runtime_netns(comp.netns.path, comp.netns.inode)
            st.runtime.add(ns)
        gateway = None
        for ep in comp.endpoints:
            net = nets[ep.network]
            name = names.veth(ep.id)
            st.veths[name] = Veth(
                name=name,
                endpoint=ep.id,
                bridge=names.bridge(net.id),
                netns=ns,
                inner=ep.inner,
                mac=ep.mac,
                address=f"{ep.ip}/{ep.prefixlen}",
                mtu=net.mtu,
            )
            if ep.default_route and net.gateway:
                gateway = net.gateway
        # (in a runtime's namespace, read back only through the agent's interfaces:
        # another plugin may own the namespace's default route)
        st.routes[ns] = gateway
        if comp.netns is not None:
            continue  # its resolver is the runtime's to write (from a CNI result)
        if net_dns or any(ep.dns is not None for ep in comp.endpoints):
            content = resolv_conf(comp, nets)
            if content is not None:
                st.resolv[ns] = content
    st.rules, st.sysctls = host_rules(doc)
    acl = compile_acl(doc, tables or {}, compiled)
    if acl is not None:
        st.rules = (st.rules or frozenset()) | frozenset(acl.rules)
        st.elements = acl.elements
        for net_id in acl.filtered:
            bridge = st.bridges[names.bridge(net_id)]
            st.bridges[bridge.name] = dataclasses.replace(bridge, filtered=True)
    return st


def handover(st: HostState, comp: proto.Compartment, nets: Mapping[str, proto.NetworkSpec]) -> None:
    """The veths of a handed-over compartment: inner ends bare in the host's namespace
    (no address, no route: the runtime that takes them sets those)."""
    for ep in comp.endpoints:
        name = names.veth(ep.id)
        st.veths[name] = Veth(
            name=name,
            endpoint=ep.id,
            bridge=names.bridge(ep.network),
            netns=HANDOVER,
            inner=names.handover(ep.id),
            mac=ep.mac,
            address="",
            mtu=nets[ep.network].mtu,
        )


def without(st: HostState, gone: Collection[str]) -> None:
    """Leave out of the desired ``st`` what would go into the runtime namespaces
    ``gone`` (no longer there, or another namespace at their path): nothing can be
    plumbed into them, and the kernel removed what was."""
    st.runtime.difference_update(gone)
    for name in [n for n, v in st.veths.items() if v.netns in gone]:
        del st.veths[name]
    for ns in gone:
        st.routes.pop(ns, None)
