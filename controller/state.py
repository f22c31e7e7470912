"""The controller's rows, the deltas that change them, and the indexed in-memory view.

Every mutation is a :class:`Delta`: written to the store in one transaction, then
applied to :class:`State`. State is therefore always what the store holds, and is
rebuilt from it at start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from proto import TABLE_MODES, EndpointRecord, LocalEndpoint, NetworkSpec, PortMapping, names
from proto.parts import Dns, Netns
from proto.policy import Policy

from .ipam import Pool

HOST_LOCAL_MODES = frozenset({"nat", "internal"})


@dataclass(frozen=True, slots=True)
class HostRow:
    id: str
    vtep: str | None = None
    version: str = ""
    state: Literal["online", "offline"] = "offline"
    desired_gen: int = 0
    applied_desired: int = 0
    applied_networks: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    last_seen: float = 0.0

    def next_desired(self) -> HostRow:
        """At its next desired generation (``dataclasses.replace`` costs ~10 times as
        much, and every write bumps a host)."""
        return HostRow(
            self.id, self.vtep, self.version, self.state, self.desired_gen + 1,
            self.applied_desired, self.applied_networks, self.errors, self.last_seen,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class NetworkRow:
    """A network: its wire spec (every setting, defined once in
    :class:`proto.models.NetworkFields`) and what only the controller keeps."""

    spec: NetworkSpec
    #: generation of the network's endpoint table (bumped by every endpoint change)
    table_gen: int
    created: float = 0.0
    #: hosts the network is held on without an endpoint there (``PUT
    #: /v1/networks/ID/hosts/HOST``: a Docker network, a CNI configuration), sorted
    hosts: tuple[str, ...] = ()

    def next_table(self) -> NetworkRow:
        """At its table's next generation (every endpoint write makes one)."""
        return NetworkRow(self.spec, self.table_gen + 1, self.created, self.hosts)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def subnet(self) -> str:
        return self.spec.subnet

    @property
    def gateway(self) -> str | None:
        return self.spec.gateway

    @property
    def vni(self) -> int | None:
        return self.spec.vni

    @property
    def generation(self) -> int:
        return self.spec.generation

    @property
    def has_table(self) -> bool:
        return self.mode in TABLE_MODES

    @property
    def host_local(self) -> bool:
        return self.mode in HOST_LOCAL_MODES


@dataclass(frozen=True, slots=True)
class CompartmentRow:
    id: str
    host: str
    created: float = 0.0
    #: the runtime's namespace the compartment is (None: the agent makes one)
    netns: Netns | None = None
    #: the runtime takes the interfaces from the host's namespace (Docker)
    handover: bool = False


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: str
    network: str
    compartment: str
    host: str
    ip: str
    mac: str
    index: int
    default_route: bool
    gen: int
    created: float = 0.0
    #: published ports: (protocol, host_port, port, host_ip or None)
    ports: tuple[tuple[str, int, int, str | None], ...] = ()
    #: the endpoint's own DNS settings (before its network's)
    dns: Dns | None = None
    #: its interface's name in the compartment (None: ``eth{index}``)
    ifname: str | None = None
    #: its labels, ``key=value``, sorted (policies select endpoints by them)
    labels: tuple[str, ...] = ()

    @property
    def inner(self) -> str:
        return self.ifname or names.inner(self.index)

    def port_mappings(self) -> tuple[PortMapping, ...]:
        return tuple(
            PortMapping(protocol=p, host_port=hp, port=cp, host_ip=ip)  # type: ignore[arg-type]
            for p, hp, cp, ip in self.ports
        )

    def record(self, vtep: str | None) -> EndpointRecord:
        """The endpoint as its network's table holds it (what peers need)."""
        return EndpointRecord(
            id=self.id,
            host=self.host,
            mac=self.mac,
            ip=self.ip,
            vtep=vtep,
            gen=self.gen,
            labels=self.labels,
        )

    def local(self, prefixlen: int) -> LocalEndpoint:
        """The endpoint as its host's desired document holds it."""
        return LocalEndpoint(
            id=self.id,
            network=self.network,
            index=self.index,
            mac=self.mac,
            ip=self.ip,
            prefixlen=prefixlen,
            default_route=self.default_route,
            ports=self.port_mappings(),
            dns=self.dns,
            ifname=self.ifname,
            labels=self.labels,
        )


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """An ACL policy (README, "Policies"): its wire form, as hosts get it."""

    spec: Policy
    created: float = 0.0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def network(self) -> str:
        return self.spec.network


Row = HostRow | NetworkRow | CompartmentRow | EndpointRow | PolicyRow
Table = Literal["hosts", "networks", "compartments", "endpoints", "policies"]
#: the tables, each before those whose rows refer to its rows
TABLES: tuple[Table, ...] = ("hosts", "networks", "compartments", "endpoints", "policies")

TABLE_OF: dict[type, Table] = {
    HostRow: "hosts",
    NetworkRow: "networks",
    CompartmentRow: "compartments",
    EndpointRow: "endpoints",
    PolicyRow: "policies",
}


@dataclass
class Delta:
    """One transaction: rows to write, rows to delete, generation floors to raise."""

    puts: list[Row] = field(default_factory=list)
    deletes: list[tuple[Table, str]] = field(default_factory=list)
    floors: dict[str, int] = field(default_factory=dict)

    def put(self, row: Row) -> None:
        self.puts.append(row)

    def delete(self, table: Table, ident: str) -> None:
        self.deletes.append((table, ident))


@dataclass
class Applied:
    """What one committed :class:`Delta` changed: each row it touched, as it was before
    and as it is after (None: absent). Publication and convergence targets are derived
    from it (:mod:`controller.publication`, :mod:`controller.convergence`)."""

    hosts: dict[str, tuple[HostRow | None, HostRow | None]] = field(default_factory=dict)
    networks: dict[str, tuple[NetworkRow | None, NetworkRow | None]] = field(default_factory=dict)
    compartments: dict[str, tuple[CompartmentRow | None, CompartmentRow | None]] = field(
        default_factory=dict
    )
    endpoints: dict[str, tuple[EndpointRow | None, EndpointRow | None]] = field(
        default_factory=dict
    )
    policies: dict[str, tuple[PolicyRow | None, PolicyRow | None]] = field(default_factory=dict)

    def table(self, table: Table) -> dict[str, tuple[Row | None, Row | None]]:
        return getattr(self, table)  # type: ignore[no-any-return]

    def __bool__(self) -> bool:
        """Whether any row changed."""
        return bool(
            self.hosts or self.networks or self.compartments or self.endpoints or self.policies
        )


class State:
    """Rows by id, plus the indexes and address pools derived from them."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRow] = {}
        self.networks: dict[str, NetworkRow] = {}
        self.compartments: dict[str, CompartmentRow] = {}
        self.endpoints: dict[str, EndpointRow] = {}
        self.policies: dict[str, PolicyRow] = {}
        #: generation floors of deleted hosts/networks: ``host:ID``/``net:ID`` -> last gen
        self.floors: dict[str, int] = {}
        self.vnis: dict[int, str] = {}
        self.by_network: dict[str, dict[str, EndpointRow]] = defaultdict(dict)
        self.by_compartment: dict[str, dict[str, EndpointRow]] = defaultdict(dict)
        self.comps_by_host: dict[str, dict[str, CompartmentRow]] = defaultdict(dict)
        self.macs: dict[str, set[str]] = defaultdict(set)
        self.policies_by_network: dict[str, dict[str, PolicyRow]] = defaultdict(dict)
        self._pools: dict[tuple[str, str], Pool] = {}
        #: networks each host takes part in -> number of its endpoints there
        self.host_networks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    # -- derived views -------------------------------------------------------------

    def pool(self, net: NetworkRow, host: str) -> Pool:
        scope = host if net.host_local else ""
        key = (net.id, scope)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(net.subnet, net.gateway, net.spec.ip_range)
        return pool

    def participants(self, net: str) -> set[str]:
        """Hosts that hold ``net``: an endpoint there, or pinned (:mod:`controller.pins`)."""
        return {h for h, nets in self.host_networks.items() if nets.get(net)}

    def floor(self, key: str) -> int:
        return self.floors.get(key, 0)

    # -- mutation ------------------------------------------------------------------

    def apply(self, delta: Delta) -> Applied:
        """Apply a delta (already committed to the store); returns what it changed."""
        out = Applied()
        # (what Applied records it in, what State holds it in, id) of each touched row
        touched = [(out.table(t), getattr(self, t), i) for t, i in delta.deletes]
        for r in delta.puts:
            t = TABLE_OF[type(r)]
            touched.append((out.table(t), getattr(self, t), r.id))
        for rows, held, ident in touched:
            if ident not in rows:
                rows[ident] = (held.get(ident), None)
        for table, ident in delta.deletes:
            self._delete(table, ident)
        for row in delta.puts:
            self._put(row)
        for key, value in delta.floors.items():
            self.floors[key] = max(self.floors.get(key, 0), value)
        for rows, held, ident in touched:
            rows[ident] = (rows[ident][0], held.get(ident))
        return out

    def _put(self, row: Row) -> None:
        if isinstance(row, HostRow):
            self.hosts[row.id] = row
        elif isinstance(row, NetworkRow):
            old = self.networks.get(row.id)
            if old is not None and old.vni is not None:
                self.vnis.pop(old.vni, None)
            self._pins(row.id, old.hosts if old is not None else (), row.hosts)
            self.networks[row.id] = row
            if row.vni is not None:
                self.vnis[row.vni] = row.id
        elif isinstance(row, CompartmentRow):
            self.compartments[row.id] = row
            self.comps_by_host[row.host][row.id] = row
        elif isinstance(row, PolicyRow):
            self._delete("policies", row.id)
            self.policies[row.id] = row
            self.policies_by_network[row.network][row.id] = row
        else:
            if row.id in self.endpoints:
                self._delete("endpoints", row.id)
            self.endpoints[row.id] = row
            self.by_network[row.network][row.id] = row
            self.by_compartment[row.compartment][row.id] = row
            self.macs[row.network].add(row.mac)
            self.pool(self.networks[row.network], row.host).take(row.ip)
            self.host_networks[row.host][row.network] += 1

    def _pins(self, network: str, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """A network's pinned hosts changed: each holds it as with one more endpoint."""
        for host in set(old) - set(new):
            nets = self.host_networks[host]
            nets[network] -= 1
            if nets[network] <= 0:
                del nets[network]
        for host in set(new) - set(old):
            self.host_networks[host][network] += 1

    def _delete(self, table: Table, ident: str) -> None:
        if table == "hosts":
            self.hosts.pop(ident, None)
        elif table == "networks":
            net = self.networks.pop(ident, None)
            if net is not None and net.vni is not None:
                self.vnis.pop(net.vni, None)
            if net is not None:
                self._pins(ident, net.hosts, ())
            self.by_network.pop(ident, None)
            self.macs.pop(ident, None)
            for key in [k for k in self._pools if k[0] == ident]:
                del self._pools[key]
        elif table == "compartments":
            comp = self.compartments.pop(ident, None)
            if comp is not None:
                self.comps_by_host[comp.host].pop(ident, None)
                if not self.comps_by_host[comp.host]:
                    del self.comps_by_host[comp.host]
            self.by_compartment.pop(ident, None)
        elif table == "policies":
            pol = self.policies.pop(ident, None)
            if pol is not None:
                self.policies_by_network[pol.network].pop(ident, None)
                if not self.policies_by_network[pol.network]:
                    del self.policies_by_network[pol.network]
        else:
            ep = self.endpoints.pop(ident, None)
            if ep is None:
                return
            self.by_network[ep.network].pop(ident, None)
            self.by_compartment[ep.compartment].pop(ident, None)
            self.macs[ep.network].discard(ep.mac)
            net = self.networks.get(ep.network)
            if net is not None:
                self.pool(net, ep.host).release(ep.ip)
            nets = self.host_networks[ep.host]
            nets[ep.network] -= 1
            if nets[ep.network] <= 0:
                del nets[ep.network]
