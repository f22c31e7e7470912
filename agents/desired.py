"""From the wire documents to the kernel state a host must hold (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import proto

from . import names
from .model import FLOOD_MAC, Bridge, Fdb, HostState, Neigh, Veth, Vxlan
from .rules import host_rules

VXLAN_PORT = 4789


def desired_state(
    host: str,
    doc: proto.HostDesired,
    tables: Mapping[str, Mapping[str, proto.EndpointRecord]],
    vtep: str | None,
    allowed_uplinks: Collection[str] = (),
) -> HostState:
    """``tables`` maps network id → endpoint id → record (what the agent holds).

    A transparent network's uplink is a link the agent does not own: it is enslaved only
    when the host's configuration allows it (``allowed_uplinks``); otherwise the bridge
    is made without it and the refusal is in ``refused``."""
    st = HostState()
    nets = {n.id: n for n in doc.networks}
    for net in doc.networks:
        br = names.bridge(net.id)
        address = (
            f"{net.gateway}/{net.prefixlen}" if net.gateway and net.mode != "transparent" else None
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
            remote_vteps = set()
            for rec in tables.get(net.id, {}).values():
                if rec.host == host or rec.vtep is None or rec.vtep == vtep:
                    continue
                st.fdb.add(Fdb(vx, rec.mac, rec.vtep))
                st.neigh.add(Neigh(vx, rec.ip, rec.mac))
                remote_vteps.add(rec.vtep)
            for dst in remote_vteps:
                st.fdb.add(Fdb(vx, FLOOD_MAC, dst))
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
