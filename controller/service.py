"""The controller's domain logic: validate, allocate, commit, say what to publish.

Every operation is synchronous and does no network I/O: it checks the request
against :class:`State`, builds one :class:`Delta`, commits it to the store, applies
it to the state and returns an :class:`Outcome` — the publications the change needs
(O(1) of them for an endpoint) and the convergence :class:`Target` that says which
host must report which generation. The bus publishes; the API waits.
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import proto
from proto import topics, transit
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate, PublishedPort

from .errors import Conflict, Invalid, NotFound
from .ipam import random_mac
from .state import CompartmentRow, Delta, EndpointRow, HostRow, NetworkRow, State
from .store import Store

T = TypeVar("T")

#: records per snapshot shard (~80 bytes each: a shard stays far below MAX_PAYLOAD)
SHARD_RECORDS = 2000
VNI_AUTO_START = 4096
MAX_ENDPOINTS_PER_COMPARTMENT = 64


class Publish:
    """One MQTT publish. A lazy one (``build``) makes its payload when first asked for
    it: a host's desired document is built when the bus sends it, from the state as it
    is then, so that many changes of one host in quick succession cost one document."""

    __slots__ = ("_build", "_payload", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes | None,
        retain: bool,
        build: Callable[[], bytes] | None = None,
    ) -> None:
        if payload is None and build is None:
            raise ValueError("a publish needs a payload or a way to build it")
        self.topic = topic
        self.retain = retain
        self._payload = payload
        self._build = build

    @property
    def lazy(self) -> bool:
        return self._payload is None

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            assert self._build is not None
            self._payload = self._build()
        return self._payload

    def __repr__(self) -> str:
        size = "lazy" if self._payload is None else len(self._payload)
        return f"Publish({self.topic!r}, {size}, retain={self.retain})"


@dataclass
class HostDoc:
    """One host's desired document in parts: each compartment's model, its msgpack
    encoding and the networks it uses, in compartment id order."""

    parts: dict[str, tuple[proto.Compartment, bytes, frozenset[str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    networks: Counter[str] = field(default_factory=Counter)

    def put(self, cid: str, part: tuple[proto.Compartment, bytes, frozenset[str]]) -> None:
        self.drop(cid)
        self.parts[cid] = part
        bisect.insort(self.order, cid)
        self.networks.update(part[2])

    def drop(self, cid: str) -> None:
        part = self.parts.pop(cid, None)
        if part is not None:
            del self.order[bisect.bisect_left(self.order, cid)]
            self.networks.subtract(part[2])


@dataclass
class HostTarget:
    """Generations one host must report before a change counts as applied there."""

    desired: int | None = None
    networks: dict[str, int] = field(default_factory=dict)

    def missing(self, host: HostRow) -> list[str]:
        out = []
        if self.desired is not None and host.applied_desired < self.desired:
            out.append(f"desired@{self.desired} (has {host.applied_desired})")
        for net, gen in sorted(self.networks.items()):
            have = host.applied_networks.get(net, 0)
            if have < gen:
                out.append(f"{net}@{gen} (has {have})")
        return out


Target = dict[str, HostTarget]


@dataclass
class Outcome(Generic[T]):
    value: T
    publish: list[Publish] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    target: Target = field(default_factory=dict)


def _target(target: Target, host: str) -> HostTarget:
    return target.setdefault(host, HostTarget())


class Controller:
    """Owner of the desired state. Not thread-safe: call from one event loop."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.state = State()
        rows, floors = store.load()
        delta = Delta(puts=list(rows), floors=floors)
        self.state.apply(delta)
        for h in list(self.state.hosts.values()):
            # runtime fields come back with the retained status messages
            self.state.hosts[h.id] = dataclasses.replace(h, state="offline")
        #: shards of each network's snapshot currently retained at the broker
        self.shards: dict[str, int] = {}
        #: endpoint id → (gen, VTEP, its record, the record's msgpack encoding)
        self._records: dict[str, tuple[int, str | None, proto.EndpointRecord, bytes]] = {}
        #: each host's desired document in parts (see :class:`HostDoc`); a commit marks
        #: the compartments it touched stale, and only those are built again
        self._docs: dict[str, HostDoc] = {}
        self._stale: set[str] = set()
        self._placed: dict[str, str] = {}  # compartment -> the host whose document has it
        self._specs: dict[str, tuple[NetworkRow, proto.NetworkSpec, bytes]] = {}

    # -- helpers -------------------------------------------------------------------

    def _commit(self, delta: Delta) -> None:
        touched = self._touched(delta)
        self.store.apply(delta)
        self.state.apply(delta)
        self._stale |= touched
        for table, ident in delta.deletes:
            if table == "hosts":  # a decommissioned host's document goes with it
                self._docs.pop(ident, None)

    def _touched(self, delta: Delta) -> set[str]:
        """Compartments whose part of their host's desired document ``delta`` changes."""
        st = self.state
        out: set[str] = set()
        for table, ident in delta.deletes:
            if table == "endpoints" and ident in st.endpoints:
                out.add(st.endpoints[ident].compartment)
            elif table == "compartments":
                out.add(ident)
        for row in delta.puts:
            if isinstance(row, EndpointRow):
                out.add(row.compartment)
                if row.id in st.endpoints:
                    out.add(st.endpoints[row.id].compartment)
            elif isinstance(row, CompartmentRow):
                out.add(row.id)
            elif isinstance(row, NetworkRow):
                old = st.networks.get(row.id)
                if old is not None and old.subnet != row.subnet:  # prefix lengths change
                    out.update(ep.compartment for ep in st.by_network.get(row.id, {}).values())
        return out

    def _network(self, ident: str, *, ref: bool = False) -> NetworkRow:
        net = self.state.networks.get(ident)
        if net is None:
            if ref:
                raise Invalid(f"network {ident!r} does not exist")
            raise NotFound("network", ident)
        return net

    def _host(self, ident: str, *, ref: bool = False) -> HostRow:
        host = self.state.hosts.get(ident)
        if host is None:
            if ref:
                raise Invalid(f"host {ident!r} is not known: no agent has reported it")
            raise NotFound("host", ident)
        return host

    def _compartment(self, ident: str, *, ref: bool = False) -> CompartmentRow:
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

    def _record(self, ep: EndpointRow) -> tuple[int, str | None, proto.EndpointRecord, bytes]:
        host = self.state.hosts.get(ep.host)
        vtep = host.vtep if host else None
        cached = self._records.get(ep.id)
        if cached is None or cached[0] != ep.gen or cached[1] != vtep:
            rec = ep.record(vtep)
            cached = self._records[ep.id] = (ep.gen, vtep, rec, proto.encode(rec))
        return cached

    def record(self, ep: EndpointRow) -> proto.EndpointRecord:
        return self._record(ep)[2]

    def record_frame(self, ep: EndpointRow) -> bytes:
        """The record's encoding, cached with it: a snapshot of 20,000 records is
        assembled, not validated and encoded again after every change."""
        return self._record(ep)[3]

    def _desired_parts(
        self, host: str
    ) -> tuple[list[tuple[proto.NetworkSpec, bytes]], list[tuple[proto.Compartment, bytes]]]:
        """The host's network specs and compartments, each with its msgpack encoding:
        O(compartments changed since the last call), not O(the host's compartments)."""
        self._refresh()
        doc = self._docs.get(host)
        if doc is None:
            doc = self._docs[host] = HostDoc()
            for cid in self.state.comps_by_host.get(host, {}):
                doc.put(cid, self._compartment_part(cid))
                self._placed[cid] = host
        comps = [doc.parts[cid][:2] for cid in doc.order]
        nets = sorted(n for n, count in doc.networks.items() if count > 0)
        return [self._spec(self.state.networks[n]) for n in nets], comps

    def _refresh(self) -> None:
        """Rebuild the stale compartments in the documents built so far."""
        stale, self._stale = self._stale, set()
        for cid in stale:
            was = self._placed.pop(cid, None)
            if was in self._docs:
                self._docs[was].drop(cid)
            comp = self.state.compartments.get(cid)
            if comp is not None and comp.host in self._docs:
                self._docs[comp.host].put(cid, self._compartment_part(cid))
                self._placed[cid] = comp.host

    def _compartment_part(self, cid: str) -> tuple[proto.Compartment, bytes, frozenset[str]]:
        eps = sorted(self.state.by_compartment.get(cid, {}).values(), key=lambda e: e.index)
        local = []
        for ep in eps:
            subnet = self.state.networks[ep.network].subnet
            local.append(
                proto.LocalEndpoint(
                    id=ep.id,
                    network=ep.network,
                    index=ep.index,
                    mac=ep.mac,
                    ip=ep.ip,
                    prefixlen=ipaddress.IPv4Network(subnet).prefixlen,
                    default_route=ep.default_route,
                    ports=ep.port_mappings(),
                )
            )
        doc = proto.Compartment(id=cid, endpoints=tuple(local))
        return doc, proto.encode(doc), frozenset(ep.network for ep in eps)

    def desired(self, host: str) -> proto.HostDesired:
        """The host-local desired document, built from the state (consistent by
        construction: its parts are validated models, not validated again)."""
        specs, comps = self._desired_parts(host)
        return proto.HostDesired.model_construct(
            host=host,
            generation=self.state.hosts[host].desired_gen,
            networks=tuple(s for s, _ in specs),
            compartments=tuple(c for c, _ in comps),
        )

    def desired_later(self, host: str) -> Publish:
        """The host's desired document, built when the bus sends it (see :class:`Publish`)."""
        return Publish(topics.host_desired(host), None, True, lambda: self._desired_frame(host))

    def desired_publish(self, host: str) -> Publish:
        return Publish(topics.host_desired(host), self._desired_frame(host), True)

    def _desired_frame(self, host: str) -> bytes:
        """The desired document's frame, assembled from the cached encodings of its parts."""
        specs, comps = self._desired_parts(host)
        head = proto.HostDesired(host=host, generation=self.state.hosts[host].desired_gen)
        return proto.pack_parts(
            head.model_dump(mode="json"),
            {"networks": [b for _, b in specs], "compartments": [b for _, b in comps]},
        )

    def _spec(self, net: NetworkRow) -> tuple[proto.NetworkSpec, bytes]:
        cached = self._specs.get(net.id)
        if cached is None or cached[0] != net:
            spec = net.spec()
            cached = (net, spec, proto.encode(spec))
            self._specs[net.id] = cached
        return cached[1], cached[2]

    def network_publish(self, net: NetworkRow) -> Publish:
        return Publish(topics.network(net.id), proto.encode(net.spec()), True)

    def snapshot(self, net_id: str) -> list[Publish]:
        """Every shard of the network's table at its current generation, and empty
        retained messages for shards left over from a larger table."""
        net = self.state.networks[net_id]
        eps = sorted(self.state.by_network.get(net_id, {}).values(), key=lambda e: e.id)
        frames = [self.record_frame(ep) for ep in eps]
        count = max(1, -(-len(frames) // SHARD_RECORDS))
        out = []
        for i in range(count):
            head = proto.NetworkSnapshot(
                network=net_id, generation=net.table_gen, shard=i, shards=count
            )
            part = frames[i * SHARD_RECORDS : (i + 1) * SHARD_RECORDS]
            frame = proto.pack_parts(head.model_dump(mode="json"), {"records": part})
            out.append(Publish(topics.network_snapshot(net_id, i), frame, True))
        for i in range(count, self.shards.get(net_id, count)):
            out.append(Publish(topics.network_snapshot(net_id, i), b"", True))
        self.shards[net_id] = count
        return out

    def _bump_host(self, delta: Delta, host: str, bumped: dict[str, HostRow]) -> HostRow:
        row = bumped.get(host) or self.state.hosts[host]
        if host not in bumped:
            row = dataclasses.replace(row, desired_gen=row.desired_gen + 1)
            bumped[host] = row
            delta.put(row)
        return row

    def _table_target(self, target: Target, net: NetworkRow, gen: int) -> None:
        if net.has_table:
            for h in self.state.participants(net.id):
                _target(target, h).networks[net.id] = gen

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
        out: Outcome[HostRow] = Outcome(row)
        if old is not None and (old.vtep, old.version) == (row.vtep, row.version):
            self.state.hosts[row.id] = row  # runtime fields only: not persisted
            return out
        delta = Delta(puts=[row])
        changes: dict[str, list[EndpointRow]] = {}
        if old is not None and old.vtep != row.vtep:
            for comp in self.state.comps_by_host.get(row.id, {}).values():
                for ep in self.state.by_compartment.get(comp.id, {}).values():
                    if self.state.networks[ep.network].has_table:
                        changes.setdefault(ep.network, []).append(ep)
        nets: list[NetworkRow] = []
        for net_id, eps in sorted(changes.items()):
            net = self.state.networks[net_id]
            net = dataclasses.replace(net, table_gen=net.table_gen + 1)
            nets.append(net)
            delta.put(net)
            for ep in eps:
                delta.put(dataclasses.replace(ep, gen=net.table_gen))
        self._commit(delta)
        if old is None:
            out.publish.append(self.desired_later(row.id))
        for net in nets:
            ups = tuple(
                self.record(ep) for ep in (self.state.endpoints[e.id] for e in changes[net.id])
            )
            change = proto.NetworkChange(network=net.id, generation=net.table_gen, upserts=ups)
            out.publish.append(Publish(topics.network_changes(net.id), proto.encode(change), False))
            out.dirty.add(net.id)
            self._table_target(out.target, net, net.table_gen)
        return out

    def host_offline(self, host: str) -> None:
        row = self.state.hosts.get(host)
        if row is not None and row.state != "offline":
            self.state.hosts[host] = dataclasses.replace(row, state="offline")

    def decommission_host(self, ident: str, *, force: bool = False) -> Outcome[str]:
        host = self._host(ident)
        comps = list(self.state.comps_by_host.get(ident, {}).values())
        if comps and not force:
            raise Conflict(
                f"host {ident!r} still has {len(comps)} compartment(s); delete them or force"
            )
        delta = Delta()
        out: Outcome[str] = Outcome(ident)
        eps = [ep for c in comps for ep in self.state.by_compartment.get(c.id, {}).values()]
        bumped: dict[str, HostRow] = {}
        pending = self._delete_endpoints(delta, eps, bumped)
        bumped.pop(ident, None)
        delta.puts = [r for r in delta.puts if not (isinstance(r, HostRow) and r.id == ident)]
        for c in comps:
            delta.delete("compartments", c.id)
        delta.delete("hosts", ident)
        delta.floors[f"host:{ident}"] = host.desired_gen + 1
        self._commit(delta)
        self._finish_deletes(out, pending, bumped)
        out.target.pop(ident, None)
        out.publish.append(Publish(topics.host_desired(ident), b"", True))
        out.publish.append(Publish(topics.host_status(ident), b"", True))
        return out

    # -- networks ------------------------------------------------------------------

    def create_network(self, req: NetworkCreate) -> Outcome[NetworkRow]:
        if req.id in self.state.networks:
            raise Conflict(f"network {req.id!r} already exists")
        vni = req.vni
        if req.mode == "overlay":
            if vni is None:
                vni = self._free_vni()
            elif vni in self.state.vnis:
                raise Conflict(f"VNI {vni} is already used by network {self.state.vnis[vni]!r}")
            self._check_transit(vni)
        elif vni is not None:
            raise Invalid(f"a {req.mode} network has no VNI")
        gateway = req.gateway
        if gateway is None and req.mode in ("overlay", "nat"):
            # transparent: the physical network's router, if any; internal: host-only
            gateway = str(next(ipaddress.IPv4Network(req.subnet).hosts()))
        mtu = req.mtu or (1450 if req.mode == "overlay" else 1500)
        base = self.state.floor(f"net:{req.id}")
        try:
            spec = proto.NetworkSpec(
                id=req.id,
                mode=req.mode,
                subnet=req.subnet,
                gateway=gateway,
                vni=vni,
                mtu=mtu,
                generation=base + 1,
                uplink=req.uplink,
                uplinks=dict(req.uplinks),
                ip_range=req.ip_range,
                outbound_nat=req.outbound_nat,
                nat_exceptions=tuple(req.nat_exceptions),
            )
        except ValueError as e:
            raise Invalid(_first_error(e)) from None
        row = NetworkRow(
            id=spec.id,
            mode=spec.mode,
            subnet=spec.subnet,
            gateway=spec.gateway,
            vni=spec.vni,
            mtu=spec.mtu,
            generation=spec.generation,
            table_gen=base + 1,
            created=self.clock(),
            uplink=spec.uplink,
            uplinks=dict(spec.uplinks),
            ip_range=spec.ip_range,
            outbound_nat=spec.outbound_nat,
            nat_exceptions=spec.nat_exceptions,
        )
        self._commit(Delta(puts=[row]))
        out = Outcome(row, publish=[self.network_publish(row)])
        out.publish.extend(self.snapshot(row.id))
        return out

    def _free_vni(self) -> int:
        vni = VNI_AUTO_START
        taken = {transit.router_address(v) for v in self.state.vnis}
        while vni in self.state.vnis or transit.router_address(vni) in taken:
            vni += 1
        return vni

    def _check_transit(self, vni: int) -> None:
        """409 when another overlay's router would have the same transit address."""
        address = transit.router_address(vni)
        for other, net in self.state.vnis.items():
            if transit.router_address(other) == address:
                raise Conflict(
                    f"VNI {vni} gives the same router transit address ({address}) as VNI "
                    f"{other} of network {net!r} (VNIs {transit.SLOTS} apart): choose another"
                )

    def delete_network(self, ident: str, *, force: bool = False) -> Outcome[str]:
        net = self._network(ident)
        eps = list(self.state.by_network.get(ident, {}).values())
        if eps and not force:
            raise Conflict(
                f"network {ident!r} still has {len(eps)} endpoint(s); delete them or force"
            )
        out: Outcome[str] = Outcome(ident)
        delta = Delta()
        bumped: dict[str, HostRow] = {}
        pending = self._delete_endpoints(delta, eps, bumped)
        delta.puts = [r for r in delta.puts if not (isinstance(r, NetworkRow) and r.id == ident)]
        delta.delete("networks", ident)
        delta.floors[f"net:{ident}"] = net.table_gen + 1
        self._commit(delta)
        self._finish_deletes(out, pending, bumped)
        out.publish.append(Publish(topics.network(ident), b"", True))
        for i in range(self.shards.pop(ident, 1)):
            out.publish.append(Publish(topics.network_snapshot(ident, i), b"", True))
        return out

    # -- compartments --------------------------------------------------------------

    def create_compartment(self, req: CompartmentCreate) -> Outcome[CompartmentRow]:
        host = self._host(req.host, ref=True)
        ident = req.id or _new_id("c", self.state.compartments)
        if ident in self.state.compartments:
            raise Conflict(f"compartment {ident!r} already exists")
        row = CompartmentRow(id=ident, host=host.id, created=self.clock())
        delta = Delta(puts=[row])
        bumped: dict[str, HostRow] = {}
        h = self._bump_host(delta, host.id, bumped)
        self._commit(delta)
        return Outcome(
            row,
            publish=[self.desired_later(host.id)],
            target={host.id: HostTarget(desired=h.desired_gen)},
        )

    def delete_compartment(self, ident: str, *, force: bool = False) -> Outcome[str]:
        comp = self._compartment(ident)
        eps = list(self.state.by_compartment.get(ident, {}).values())
        if eps and not force:
            raise Conflict(
                f"compartment {ident!r} still has {len(eps)} endpoint(s); delete them or force"
            )
        out: Outcome[str] = Outcome(ident)
        delta = Delta()
        bumped: dict[str, HostRow] = {}
        pending = self._delete_endpoints(delta, eps, bumped)
        self._bump_host(delta, comp.host, bumped)
        delta.delete("compartments", ident)
        self._commit(delta)
        self._finish_deletes(out, pending, bumped)
        return out

    # -- endpoints -----------------------------------------------------------------

    def create_endpoint(self, req: EndpointCreate) -> Outcome[EndpointRow]:
        net = self._network(req.network, ref=True)
        comp = self._compartment(req.compartment, ref=True)
        self._host(comp.host, ref=True)
        ident = req.id or _new_id("ep", self.state.endpoints)
        if ident in self.state.endpoints:
            raise Conflict(f"endpoint {ident!r} already exists")
        siblings = list(self.state.by_compartment.get(comp.id, {}).values())
        if any(s.network == net.id for s in siblings):
            raise Conflict(f"compartment {comp.id!r} already has an endpoint in network {net.id!r}")
        if len(siblings) >= MAX_ENDPOINTS_PER_COMPARTMENT:
            raise Conflict(f"compartment {comp.id!r} has {len(siblings)} endpoints, the maximum")
        self._check_overlap(net, comp.host)
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
        ports = self._check_ports(net, comp.host, req.ports, ident)
        used_idx = {s.index for s in siblings}
        index = next(i for i in range(MAX_ENDPOINTS_PER_COMPARTMENT) if i not in used_idx)
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
        net = dataclasses.replace(net, table_gen=net.table_gen + 1)
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
        )
        delta.put(net)
        delta.put(row)
        host = self._bump_host(delta, comp.host, {})
        self._commit(delta)
        change = proto.NetworkChange(
            network=net.id, generation=net.table_gen, upserts=(self.record(row),)
        )
        out = Outcome(
            row,
            publish=[
                Publish(topics.network_changes(net.id), proto.encode(change), False),
                self.desired_later(host.id),
            ],
            dirty={net.id},
        )
        _target(out.target, host.id).desired = host.desired_gen
        self._table_target(out.target, net, net.table_gen)
        return out

    def _check_overlap(self, net: NetworkRow, host: str) -> None:
        """409 when ``net`` would join ``host`` beside a network of the host whose
        subnet overlaps it while both route it in the host's namespace
        (:attr:`proto.NetworkSpec.host_l3`): one would take the other's traffic.
        On the endpoint-create path: the specs are built only for overlapping subnets."""
        subnet = ipaddress.IPv4Network(net.subnet)
        overlapping = [
            other
            for other_id, count in sorted(self.state.host_networks.get(host, {}).items())
            if count
            and other_id != net.id
            and (other := self.state.networks.get(other_id)) is not None
            and subnet.overlaps(ipaddress.IPv4Network(other.subnet))
        ]
        if not overlapping or not net.spec().host_l3:
            return
        for other in overlapping:
            if other.spec().host_l3:
                raise Conflict(
                    f"network {net.id!r} ({net.subnet}) overlaps network {other.id!r} "
                    f"({other.subnet}) on host {host!r}: both route it in the host's "
                    "namespace, so one would take the other's traffic; use another "
                    "subnet, or another host"
                )

    def _check_ports(
        self, net: NetworkRow, host: str, ports: Iterable[PublishedPort], endpoint: str
    ) -> tuple[tuple[str, int, int, str | None], ...]:
        """Published ports as stored; 422 outside nat networks, 409 when a host port is
        taken on that host (by another endpoint, or twice in the request)."""
        want = [
            proto.PortMapping(
                protocol=p.protocol, host_port=p.host_port, port=p.port, host_ip=p.host_ip
            )
            for p in ports
        ]
        if want and net.mode != "nat":
            raise Invalid(f"ports are published on nat networks; {net.id!r} is {net.mode}")
        if not want:
            return ()
        taken = [
            (other.id, m)
            for comp in self.state.comps_by_host.get(host, {}).values()
            for other in self.state.by_compartment.get(comp.id, {}).values()
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

    def set_ports(self, ident: str, ports: Iterable[PublishedPort]) -> Outcome[EndpointRow]:
        """Replace an endpoint's published ports: only its host's document changes."""
        ep = self.endpoint(ident)
        net = self.state.networks[ep.network]
        row = dataclasses.replace(ep, ports=self._check_ports(net, ep.host, ports, ep.id))
        delta = Delta(puts=[row])
        host = self._bump_host(delta, ep.host, {})
        self._commit(delta)
        return Outcome(
            row,
            publish=[self.desired_later(host.id)],
            target={host.id: HostTarget(desired=host.desired_gen)},
        )

    def delete_endpoint(self, ident: str) -> Outcome[str]:
        ep = self.endpoint(ident)
        out: Outcome[str] = Outcome(ident)
        delta = Delta()
        bumped: dict[str, HostRow] = {}
        pending = self._delete_endpoints(delta, [ep], bumped)
        self._commit(delta)
        self._finish_deletes(out, pending, bumped)
        return out

    def _delete_endpoints(
        self, delta: Delta, eps: Iterable[EndpointRow], bumped: dict[str, HostRow]
    ) -> list[tuple[NetworkRow, tuple[str, ...]]]:
        """Add the deletion of ``eps`` to ``delta`` (one new table generation per
        network, one new desired generation per host, in ``bumped``); returns what
        :meth:`_finish_deletes` publishes once the delta is committed."""
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
        pending = []
        for net_id, net_eps in sorted(by_net.items()):
            net = self.state.networks[net_id]
            net = dataclasses.replace(net, table_gen=net.table_gen + 1)
            delta.put(net)
            pending.append((net, tuple(sorted(e.id for e in net_eps))))
        return pending

    def _finish_deletes(
        self,
        out: Outcome[T],
        pending: list[tuple[NetworkRow, tuple[str, ...]]],
        hosts: Iterable[str],
    ) -> None:
        for net, ids in pending:
            for i in ids:
                self._records.pop(i, None)
            if net.id not in self.state.networks:
                continue  # the network itself went: its topics are cleared instead
            change = proto.NetworkChange(network=net.id, generation=net.table_gen, deletes=ids)
            out.publish.append(Publish(topics.network_changes(net.id), proto.encode(change), False))
            out.dirty.add(net.id)
            self._table_target(out.target, net, net.table_gen)
        for host in sorted(set(hosts)):
            if host in self.state.hosts:
                out.publish.append(self.desired_later(host))
                _target(out.target, host).desired = self.state.hosts[host].desired_gen


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
            msg = str(items[0]["msg"])
            return msg.removeprefix("Value error, ")
    return str(e)
