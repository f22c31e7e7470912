"""The controller's admission checks that look across objects: overlapping subnets on a
host, overlay routers' transit addresses, published ports. Each reads the state and
raises a :mod:`controller.errors` error with the reason; none changes anything."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

import proto
from proto import transit
from proto.parts import Netns
from proto.rest import PublishedPort

from .errors import Conflict, Invalid
from .state import NetworkRow, State

VNI_AUTO_START = 4096


def free_vni(state: State) -> int:
    """The first VNI from :data:`VNI_AUTO_START` that is free and whose router transit
    address no other overlay has."""
    vni = VNI_AUTO_START
    taken = {transit.router_address(v) for v in state.vnis}
    while vni in state.vnis or transit.router_address(vni) in taken:
        vni += 1
    return vni


def transit_free(state: State, vni: int) -> None:
    """409 when another overlay's router would have the same transit address."""
    address = transit.router_address(vni)
    for other, net in state.vnis.items():
        if transit.router_address(other) == address:
            raise Conflict(
                f"VNI {vni} gives the same router transit address ({address}) as VNI "
                f"{other} of network {net!r} (VNIs {transit.SLOTS} apart): choose another"
            )


def no_overlap(state: State, net: NetworkRow, host: str) -> None:
    """409 when ``net`` would join ``host`` beside a network of the host whose subnet
    overlaps it while both route it in the host's namespace
    (:attr:`proto.NetworkSpec.host_l3`): one would take the other's traffic. On the
    endpoint-create path: cheap unless subnets overlap."""
    subnet = _subnet(net.subnet)
    overlapping = [
        other
        for other_id, count in sorted(state.host_networks.get(host, {}).items())
        if count
        and other_id != net.id
        and (other := state.networks.get(other_id)) is not None
        and subnet.overlaps(_subnet(other.subnet))
    ]
    if not overlapping or not net.spec.host_l3:
        return
    for other in overlapping:
        if other.spec.host_l3:
            raise Conflict(
                f"network {net.id!r} ({net.subnet}) overlaps network {other.id!r} "
                f"({other.subnet}) on host {host!r}: both route it in the host's "
                "namespace, so one would take the other's traffic; use another "
                "subnet, or another host"
            )


@functools.lru_cache(maxsize=4096)
def _subnet(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def ports(
    state: State, net: NetworkRow, host: str, wanted: Iterable[PublishedPort], endpoint: str
) -> tuple[tuple[str, int, int, str | None], ...]:
    """Published ports as stored; 422 outside nat networks, 409 when a host port is
    taken on that host (by another endpoint, or twice in the request)."""
    want = [proto.PortMapping(**p.model_dump()) for p in wanted]
    if want and net.mode != "nat":
        raise Invalid(f"ports are published on nat networks; {net.id!r} is {net.mode}")
    if not want:
        return ()
    taken = [
        (other.id, m)
        for comp in state.comps_by_host.get(host, {}).values()
        for other in state.by_compartment.get(comp.id, {}).values()
        if other.id != endpoint
        for m in other.port_mappings()
    ]
    for i, m in enumerate(want):
        if any(m.clashes(q) for q in want[:i]):
            raise Conflict(f"port {m} is published twice in the request")
        for owner, q in taken:
            if m.clashes(q):
                raise Conflict(
                    f"host port {m.host_port}/{m.protocol} on host {host!r} is already "
                    f"published by endpoint {owner!r} ({q})"
                )
    return tuple((m.protocol, m.host_port, m.port, m.host_ip) for m in want)


def netns_free(state: State, host: str, netns: Netns) -> None:
    """A runtime's namespace is one compartment of its host: two that name one path and
    inode would plumb one namespace twice. (The same inode at another path is another
    namespace: a dead container's inode is given to the next one at once, and its
    compartment may not be collected yet.)"""
    for comp in state.comps_by_host.get(host, {}).values():
        if comp.netns is not None and (comp.netns.path, comp.netns.inode) == (
            netns.path,
            netns.inode,
        ):
            raise Conflict(
                f"compartment {comp.id!r} on host {host!r} already is namespace "
                f"{comp.netns.path} (inode {netns.inode})"
            )
