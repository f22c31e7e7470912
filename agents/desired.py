"""From the wire documents to the kernel state a host must hold (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import proto
from proto import names, transit

from .model import FLOOD_MAC, Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from .rules import host_rules, router_masquerade

VXLAN_PORT = 4789
TRANSIT_MTU = 1500
TRANSIT_ADDRESS = f"{transit.HOST}/{transit.SUBNET.prefixlen}"


class Overlay:
    """The remote entries of one overlay network a host must hold: a static FDB entry
    and a neighbour per remote endpoint, a flood entry per remote VTEP. Kept current
    by the ids of the records that changed (:meth:`update`), so a change costs work
    for that change, not for the whole table."""

    def __init__(self, host: str, device: str, vtep: str) -> None:
        self.key = (host, device, vtep)
        self.fdb: set[Fdb] = set()
        self.neigh: dict[tuple[str, str], Neigh] = {}
        #: record id → the record its entries were made from (shared with the table)
        self._of: dict[str, proto.EndpointRecord] = {}
        self._vteps: dict[str, int] = {}
        #: entries added or removed since :meth:`take_dirty`
        self._dirty_fdb: set[Fdb] = set()
        self._dirty_neigh: set[tuple[str, str]] = set()

    def build(self, records: Mapping[str, proto.EndpointRecord]) -> None:
        """Fill an empty overlay from a whole table (:meth:`update` with every id, with
        no record of what changed: everything did)."""
        host, vx, vtep = self.key
        fdb, neigh, of, vteps = self.fdb, self.neigh, self._of, self._vteps
        for rid, rec in records.items():
            dst = rec.vtep
            if rec.host == host or dst is None or dst == vtep:
                continue
            of[rid] = rec
            fdb.add(Fdb(vx, rec.mac, dst))
            neigh[vx, rec.ip] = Neigh(vx, rec.ip, rec.mac)
            vteps[dst] = vteps.get(dst, 0) + 1
        fdb.update(Fdb(vx, FLOOD_MAC, dst) for dst in vteps)

    def take_dirty(self) -> tuple[set[Fdb], set[tuple[str, str]]]:
        """The FDB entries and neighbour keys changed since the last call."""
        out = self._dirty_fdb, self._dirty_neigh
        self._dirty_fdb, self._dirty_neigh = set(), set()
        return out

    def update(self, records: Mapping[str, proto.EndpointRecord], ids: Iterable[str]) -> None:
        host, vx, vtep = self.key
        for rid in ids:
            old = self._of.pop(rid, None)
            if old is not None:
                assert old.vtep is not None
                fdb, key = Fdb(vx, old.mac, old.vtep), (vx, old.ip)
                self.fdb.discard(fdb)
                self._dirty_fdb.add(fdb)
                self._dirty_neigh.add(key)
                if self.neigh.get(key) == Neigh(vx, old.ip, old.mac):  # not taken over
                    del self.neigh[key]
                self._count(old.vtep, -1)
            rec = records.get(rid)
            if rec is None or rec.host == host or rec.vtep is None or rec.vtep == vtep:
                continue
            # an address freed and reused in one batch of changes: the live record wins
            # in either order (IPAM never gives one address to two live endpoints)
            fdb, key = Fdb(vx, rec.mac, rec.vtep), (vx, rec.ip)
            self._of[rid] = rec
            self.fdb.add(fdb)
            self.neigh[key] = Neigh(vx, rec.ip, rec.mac)
            self._dirty_fdb.add(fdb)
            self._dirty_neigh.add(key)
            self._count(rec.vtep, 1)

    def _count(self, dst: str, delta: int) -> None:
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
        self._dirty_fdb.add(flood)


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
    tables: Mapping[str, Mapping[str, proto.EndpointRecord]],
    vtep: str | None,
    allowed_uplinks: Collection[str] = (),
    overlays: Mapping[str, Overlay] | None = None,
) -> HostState:
    """``tables`` maps network id → endpoint id → record (what the agent holds);
    ``overlays``, where given, the remote entries of a network already derived from it.

    A transparent network's uplink is a link the agent does not own: it is enslaved only
    when the host's configuration allows it (``allowed_uplinks``); otherwise the bridge
    is made without it and the refusal is in ``refused``.

    The state returned may share its FDB and neighbour containers with ``overlays``: the
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
            ov = (overlays or {}).get(net.id)
            if ov is None or ov.key != (host, vx, vtep):
                ov = Overlay(host, vx, vtep)
                ov.build(tables.get(net.id, {}))
            if not st.fdb and not st.neigh:  # shared, not copied: 20,000 entries or more
                st.fdb, st.neigh = ov.fdb, ov.neigh
            else:
                st.fdb, st.neigh = st.fdb | ov.fdb, {**st.neigh, **ov.neigh}
    for comp in doc.compartments:
        ns = names.netns(host, comp.id)
        st.namespaces.add(ns)
        gateway = None
        for ep in comp.endpoints:
            net = nets[ep.network]
            name = names.veth(ep.id)
            st.veths[name] = Veth(
                name=name,
                endpoint=ep.id,
                bridge=names.bridge(net.id),
                netns=ns,
                inner=names.inner(ep.index),
                mac=ep.mac,
                address=f"{ep.ip}/{ep.prefixlen}",
                mtu=net.mtu,
            )
            if ep.default_route and net.gateway:
                gateway = net.gateway
        st.routes[ns] = gateway
    st.rules, st.sysctls = host_rules(doc)
    return st
