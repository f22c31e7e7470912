"""The controller's domain logic: validate, allocate, commit.

Every command is synchronous and does no network I/O: it checks the request against
:class:`State`, builds one :class:`Delta`, commits it to the store and applies it to the
state, and returns an :class:`Outcome` — its result and what the commit changed
(:class:`~controller.state.Applied`). What to publish for that change is
:mod:`controller.publication`'s to say, which hosts must apply it
:mod:`controller.convergence`'s; the service knows neither topics nor hosts' reports
beyond the status it folds in.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import proto
from proto import names
from proto.parts import Netns
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate, PublishedPort, label_tuple

from . import checks, replica
from .errors import Conflict, Invalid, NotFound
from .ipam import random_mac
from .state import Applied, CompartmentRow, Delta, EndpointRow, HostRow, NetworkRow, State
from .store import Store

T = TypeVar("T")
MAX_ENDPOINTS_PER_COMPARTMENT = 64


@dataclass
class Outcome(Generic[T]):
    """A command's result, and what its commit changed."""

    value: T
    change: Applied


@replica.commands
class Controller:
    """Owner of the desired state. Not thread-safe: call from one event loop."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.state = State()
        self.staging = False
        self.news: list[tuple[int, Applied]] = []  # others' commits caught up: (seq, change)
        rows, floors = store.load()
        self.state.apply(Delta(puts=list(rows), floors=floors))
        for h in list(self.state.hosts.values()):
            # runtime fields come back with the retained status messages
            self.state.hosts[h.id] = dataclasses.replace(h, state="offline")

    def _commit(self, delta: Delta) -> Applied:
        if not self.staging:  # a batch's commands are committed together (controller.bulk)
            self.store.apply(delta)
        return self.state.apply(delta)

    def network(self, ident: str, *, ref: bool = False) -> NetworkRow:
        net = self.state.networks.get(ident)
        if net is None:
            if ref:
                raise Invalid(f"network {ident!r} does not exist")
            raise NotFound("network", ident)
        return net

    def host(self, ident: str, *, ref: bool = False) -> HostRow:
        host = self.state.hosts.get(ident)
        if host is None:
            if ref:
                raise Invalid(f"host {ident!r} is not known: no agent has reported it")
            raise NotFound("host", ident)
        return host

    def compartment(self, ident: str, *, ref: bool = False) -> CompartmentRow:
        comp = self.state.compartments.get(ident)
        if comp is None:
            if ref:
                raise Invalid(f"compartment {ident!r} does not exist")
            raise NotFound("compartment", ident)
        return comp

    def endpoint(self, ident: str) -> EndpointRow:
        ep = self.state.endpoints.get(ident)
        if ep is None:
            raise NotFound("endpoint", ident)
        return ep

    def _bump_host(self, delta: Delta, host: str, bumped: dict[str, HostRow]) -> HostRow:
        row = bumped.get(host) or self.state.hosts[host]
        if host not in bumped:
            row = row.next_desired()
            bumped[host] = row
            delta.put(row)
        return row

    # -- hosts ---------------------------------------------------------------------

    def host_reported(self, status: proto.HostStatus) -> Outcome[HostRow]:
        """Fold an agent's status in. A new host is created with an empty desired
        document; a changed VTEP is republished in the host's endpoint records."""
        old = self.state.hosts.get(status.host)
        now = self.clock()
        row = HostRow(
            id=status.host,
            vtep=status.vtep if status.vtep is not None else (old.vtep if old else None),
            version=status.version,
            state=status.state,
            desired_gen=old.desired_gen if old else self.state.floor(f"host:{status.host}") + 1,
            applied_desired=status.desired_generation,
            applied_networks=dict(status.networks),
            errors=tuple(status.errors),
            last_seen=now,
        )
        if old is not None and (old.vtep, old.version) == (row.vtep, row.version):
            self.state.hosts[row.id] = row  # runtime fields only: not persisted
            return Outcome(row, Applied())
        delta = Delta(puts=[row])
        changes: dict[str, list[EndpointRow]] = {}
        if old is not None and old.vtep != row.vtep:
            for comp in self.state.comps_by_host.get(row.id, {}).values():
                for ep in self.state.by_compartment.get(comp.id, {}).values():
                    if self.state.networks[ep.network].has_table:
                        changes.setdefault(ep.network, []).append(ep)
        for net_id, eps in sorted(changes.items()):
            net = self.state.networks[net_id]
            net = dataclasses.replace(net, table_gen=net.table_gen + 1)
            delta.put(net)
            for ep in eps:
                delta.put(dataclasses.replace(ep, gen=net.table_gen))
        return Outcome(row, self._commit(delta))

    def host_offline(self, host: str) -> None:
        row = self.state.hosts.get(host)
        if row is not None and row.state != "offline":
            self.state.hosts[host] = dataclasses.replace(row, state="offline")

    def decommission_host(self, ident: str, *, force: bool = False) -> Outcome[str]:
        host = self.host(ident)
        comps = list(self.state.comps_by_host.get(ident, {}).values())
        if comps and not force:
            raise Conflict(
                f"host {ident!r} still has {len(comps)} compartment(s); delete them or force"
            )
        delta = Delta()
        eps = [ep for c in comps for ep in self.state.by_compartment.get(c.id, {}).values()]
        self._delete_endpoints(delta, eps, {})
        delta.puts = [r for r in delta.puts if not (isinstance(r, HostRow) and r.id == ident)]
        for c in comps:
            delta.delete("compartments", c.id)
        delta.delete("hosts", ident)
        delta.floors[f"host:{ident}"] = host.desired_gen + 1
        return Outcome(ident, self._commit(delta))

    # -- networks ------------------------------------------------------------------

    def create_network(self, req: NetworkCreate) -> Outcome[NetworkRow]:
        if req.id in self.state.networks:
            raise Conflict(f"network {req.id!r} already exists")
        vni = req.vni
        if req.mode == "overlay":
            if vni is None:
                vni = checks.free_vni(self.state)
            elif vni in self.state.vnis:
                raise Conflict(f"VNI {vni} is already used by network {self.state.vnis[vni]!r}")
            checks.transit_free(self.state, vni)
        elif vni is not None:
            raise Invalid(f"a {req.mode} network has no VNI")
        gateway = req.gateway
        if gateway is None and req.mode in ("overlay", "nat"):
            # transparent: the physical network's router, if any; internal: host-only
            gateway = str(next(ipaddress.IPv4Network(req.subnet).hosts()))
        mtu = req.mtu or (1450 if req.mode == "overlay" else 1500)
        base = self.state.floor(f"net:{req.id}")
        fields = req.model_dump(exclude={"gateway", "vni", "mtu"})
        try:
            spec = proto.NetworkSpec.model_validate(
                {**fields, "gateway": gateway, "vni": vni, "mtu": mtu, "generation": base + 1},
                strict=False,
            )
        except ValueError as e:
            raise Invalid(_first_error(e)) from None
        row = NetworkRow(spec, table_gen=base + 1, created=self.clock())
        return Outcome(row, self._commit(Delta(puts=[row])))

    def delete_network(self, ident: str, *, force: bool = False) -> Outcome[str]:
        net = self.network(ident)
        eps = list(self.state.by_network.get(ident, {}).values())
        if eps and not force:
            raise Conflict(
                f"network {ident!r} still has {len(eps)} endpoint(s); delete them or force"
            )
        delta = Delta()  # the hosts it is pinned on drop it too (controller.pins)
        bumped = {h: self._bump_host(delta, h, {}) for h in net.hosts if h in self.state.hosts}
        self._delete_endpoints(delta, eps, bumped)
        delta.puts = [r for r in delta.puts if not (isinstance(r, NetworkRow) and r.id == ident)]
        for pol in self.state.policies_by_network.get(ident, {}).values():  # its policies too
            delta.delete("policies", pol.id)
            delta.floors[f"policy:{pol.id}"] = pol.spec.generation
        delta.delete("networks", ident)
        delta.floors[f"net:{ident}"] = net.table_gen + 1
        return Outcome(ident, self._commit(delta))

    # -- compartments --------------------------------------------------------------

    def create_compartment(self, req: CompartmentCreate) -> Outcome[CompartmentRow]:
        host = self.host(req.host, ref=True)
        ident = req.id or _new_id("c", self.state.compartments)
        if ident in self.state.compartments:
            raise Conflict(f"compartment {ident!r} already exists")
        if req.netns is not None:
            checks.netns_free(self.state, host.id, req.netns)
        if req.handover and req.netns is not None:
            raise Invalid("a handed-over compartment names no netns")
        row = CompartmentRow(
            id=ident, host=host.id, created=self.clock(), netns=req.netns, handover=req.handover
        )
        delta = Delta(puts=[row])
        self._bump_host(delta, host.id, {})
        return Outcome(row, self._commit(delta))

    def delete_compartment(self, ident: str, *, force: bool = False) -> Outcome[str]:
        comp = self.compartment(ident)
        eps = list(self.state.by_compartment.get(ident, {}).values())
        if eps and not force:
            raise Conflict(
                f"compartment {ident!r} still has {len(eps)} endpoint(s); delete them or force"
            )
        delta = Delta()
        bumped: dict[str, HostRow] = {}
        self._delete_endpoints(delta, eps, bumped)
        self._bump_host(delta, comp.host, bumped)
        delta.delete("compartments", ident)
        return Outcome(ident, self._commit(delta))

    def collect(self, host: str, gone: Mapping[str, Netns]) -> Outcome[list[str]]:
        """Delete, with their endpoints, the runtime-owned compartments of ``host``
        whose namespace its agent found gone (``gone``: compartment → the namespace it
        found gone). A compartment made again since for another namespace is left
        alone: the report was about the one before."""
        doomed = []
        for cid, netns in sorted(gone.items()):
            comp = self.state.compartments.get(cid)
            if comp is not None and comp.host == host and comp.netns == netns:
                doomed.append(comp)
        if not doomed:
            return Outcome([], Applied())
        delta = Delta()
        bumped: dict[str, HostRow] = {}
        for comp in doomed:
            eps = list(self.state.by_compartment.get(comp.id, {}).values())
            self._delete_endpoints(delta, eps, bumped)
            delta.delete("compartments", comp.id)
        self._bump_host(delta, host, bumped)
        return Outcome([c.id for c in doomed], self._commit(delta))

    # -- endpoints -----------------------------------------------------------------

    def create_endpoint(self, req: EndpointCreate) -> Outcome[EndpointRow]:
        net = self.network(req.network, ref=True)
        comp = self.compartment(req.compartment, ref=True)
        self.host(comp.host, ref=True)
        ident = req.id or _new_id("ep", self.state.endpoints)
        if ident in self.state.endpoints:
            raise Conflict(f"endpoint {ident!r} already exists")
        siblings = list(self.state.by_compartment.get(comp.id, {}).values())
        if any(s.network == net.id for s in siblings):
            raise Conflict(f"compartment {comp.id!r} already has an endpoint in network {net.id!r}")
        if len(siblings) >= MAX_ENDPOINTS_PER_COMPARTMENT:
            raise Conflict(f"compartment {comp.id!r} has {len(siblings)} endpoints, the maximum")
        checks.no_overlap(self.state, net, comp.host)
        pool = self.state.pool(net, comp.host)
        if req.ip is not None:
            pool.check_static(req.ip)
            if pool.is_used(req.ip):
                where = f" on host {comp.host!r}" if net.host_local else ""
                raise Conflict(f"address {req.ip} is already used in network {net.id!r}{where}")
            ip = req.ip
        else:
            ip = pool.next_free()
        macs = self.state.macs.get(net.id, set())
        if req.mac is not None:
            if req.mac in macs:
                raise Conflict(f"MAC {req.mac} is already used in network {net.id!r}")
            mac = req.mac
        else:
            mac = random_mac()
            while mac in macs:
                mac = random_mac()
        ports = checks.ports(self.state, net, comp.host, req.ports, ident)
        taken = {s.inner for s in siblings}
        if req.ifname is not None and req.ifname in taken:
            raise Conflict(f"compartment {comp.id!r} already has an interface {req.ifname!r}")
        taken.add(req.ifname or "")
        used_idx = {s.index for s in siblings}
        index = next(
            (
                i
                for i in range(MAX_ENDPOINTS_PER_COMPARTMENT)
                if i not in used_idx and (req.ifname is not None or names.inner(i) not in taken)
            ),
            None,
        )
        if index is None:  # the names eth0… that are left are all taken by named ones
            raise Conflict(f"compartment {comp.id!r} has no interface name left: give ifname")
        if req.default_route and net.gateway is None:
            raise Invalid(f"network {net.id!r} has no gateway to route a default through")
        has_default = any(s.default_route for s in siblings)
        default = bool(req.default_route) or (
            req.default_route is None and not has_default and net.gateway is not None
        )
        delta = Delta()
        if default and has_default:
            for s in siblings:
                if s.default_route:
                    delta.put(dataclasses.replace(s, default_route=False))
        net = net.next_table()
        row = EndpointRow(
            id=ident,
            network=net.id,
            compartment=comp.id,
            host=comp.host,
            ip=ip,
            mac=mac,
            index=index,
            default_route=default,
            gen=net.table_gen,
            created=self.clock(),
            ports=ports,
            dns=req.dns,
            ifname=req.ifname,
            labels=label_tuple(req.labels),
        )
        delta.put(net)
        delta.put(row)
        self._bump_host(delta, comp.host, {})
        return Outcome(row, self._commit(delta))

    def set_ports(self, ident: str, ports: Iterable[PublishedPort]) -> Outcome[EndpointRow]:
        """Replace an endpoint's published ports: only its host's document changes."""
        ep = self.endpoint(ident)
        net = self.state.networks[ep.network]
        row = dataclasses.replace(ep, ports=checks.ports(self.state, net, ep.host, ports, ep.id))
        delta = Delta(puts=[row])
        self._bump_host(delta, ep.host, {})
        return Outcome(row, self._commit(delta))

    def delete_endpoint(self, ident: str) -> Outcome[str]:
        ep = self.endpoint(ident)
        delta = Delta()
        self._delete_endpoints(delta, [ep], {})
        return Outcome(ident, self._commit(delta))

    def _delete_endpoints(
        self, delta: Delta, eps: Iterable[EndpointRow], bumped: dict[str, HostRow]
    ) -> None:
        """Add the deletion of ``eps`` to ``delta``: one new table generation per
        network, one new desired generation per host (in ``bumped``)."""
        by_net: dict[str, list[EndpointRow]] = {}
        for ep in eps:
            by_net.setdefault(ep.network, []).append(ep)
            delta.delete("endpoints", ep.id)
            self._bump_host(delta, ep.host, bumped)
        gone = {ep.id for net_eps in by_net.values() for ep in net_eps}
        # a compartment that loses its default route gets it via its next endpoint
        losing = {ep.compartment for e in by_net.values() for ep in e if ep.default_route}
        for comp_id in losing:
            rest = [
                s
                for s in self.state.by_compartment.get(comp_id, {}).values()
                if s.id not in gone and self.state.networks[s.network].gateway is not None
            ]
            if rest:
                delta.put(dataclasses.replace(min(rest, key=lambda s: s.index), default_route=True))
        for net_id in sorted(by_net):
            net = self.state.networks[net_id]
            delta.put(net.next_table())


def _new_id(prefix: str, taken: Mapping[str, object]) -> str:
    while True:
        ident = f"{prefix}-{secrets.token_hex(4)}"
        if ident not in taken:
            return ident


def _first_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        items = errors(include_url=False, include_input=False)
        if items:
            return str(items[0]["msg"]).removeprefix("Value error, ")
    return str(e)
