"""Rows as the REST API shows them (:mod:`proto.rest`'s response bodies), built from
the rows and their models, not from field lists written out again."""

from __future__ import annotations

from typing import Any

from proto import names
from proto.policy import label_map
from proto.rest import Convergence

from ..convergence import behind
from ..policies import warnings
from ..state import CompartmentRow, EndpointRow, HostRow, NetworkRow, PolicyRow, State

#: wire-only fields of a spec, not part of its REST view
_WIRE = {"v", "kind"}


def network(state: State, n: NetworkRow, conv: Convergence | None = None) -> dict[str, Any]:
    return {
        **n.spec.model_dump(exclude=_WIRE),
        "table_generation": n.table_gen,
        "endpoints": len(state.by_network.get(n.id, {})),
        "hosts": sorted(state.participants(n.id)),
        "pinned": list(n.hosts),
        "convergence": conv,
    }


def compartment(state: State, c: CompartmentRow, conv: Convergence | None = None) -> dict[str, Any]:
    eps = sorted(state.by_compartment.get(c.id, {}).values(), key=lambda e: e.index)
    return {
        "id": c.id,
        "host": c.host,
        "endpoints": [e.id for e in eps],
        "netns": c.netns,
        "handover": c.handover,
        "convergence": conv,
    }


def endpoint(state: State, e: EndpointRow, conv: Convergence | None = None) -> dict[str, Any]:
    # from the row's own fields, not a validated model: a list of 20,000 endpoints
    spec = state.networks[e.network].spec
    return {
        "id": e.id,
        "network": e.network,
        "compartment": e.compartment,
        "host": e.host,
        "ip": e.ip,
        "prefixlen": spec.prefixlen,
        "mac": e.mac,
        # a handed-over interface is named for the host's namespace until taken
        "interface": names.handover(e.id)
        if state.compartments[e.compartment].handover
        else e.inner,
        "host_interface": names.veth(e.id),
        "host_mac": names.host_mac(e.id),
        "mtu": spec.mtu,
        "gateway": spec.gateway,
        "default_route": e.default_route,
        "ports": [str(p) for p in e.port_mappings()],
        "dns": e.dns,
        "resolver": e.dns or spec.dns,
        "labels": label_map(e.labels),
        "generation": e.gen,
        "convergence": conv,
    }


def policy(state: State, p: PolicyRow, conv: Convergence | None = None) -> dict[str, Any]:
    return {
        **p.spec.model_dump(exclude=_WIRE),
        "hosts": sorted(state.participants(p.network)),
        "warnings": warnings(state, p.spec),
        "created": p.created,
        "convergence": conv,
    }


def host(state: State, h: HostRow, broker: str = "") -> dict[str, Any]:
    """``broker``: the one its agent is on (:class:`controller.fleet.Fleet`)."""
    return {
        "id": h.id,
        "state": h.state,
        "version": h.version,
        "vtep": h.vtep,
        "desired_generation": h.desired_gen,
        "applied_generation": h.applied_desired,
        "applied_networks": h.applied_networks,
        "in_sync": h.state == "online" and not behind(state, h),
        "errors": list(h.errors),
        "last_seen": h.last_seen,
        "compartments": len(state.comps_by_host.get(h.id, {})),
        "broker": broker,
    }
