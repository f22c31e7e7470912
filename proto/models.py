"""Wire messages: frozen, strictly validated, one schema version, one kind each.

Arrays decode as tuples (the codec unpacks with ``use_list=False``), so models hold
tuples and stay immutable. Strict mode: no coercion of ``"1"`` into ``1``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import names
from .parts import Dns, Netns
from .policy import Labels, Policy
from .table import NetworkChange, NetworkSnapshot, SnapshotIndex
from .types import (
    Cidr,
    Generation,
    Id,
    IfName,
    IPv4,
    Mac,
    Mtu,
    Port,
    Subnet,
    Text,
    Vni,
)
from .wire import Wire, empty, unset

MAX_ERRORS = 64
#: a broker's URL as a status names it: scheme, host, port; never a user or password
BROKER_URL = r"^(mqtts?://[^@/\s]+)?$"

NetworkMode = Literal["overlay", "nat", "transparent", "internal"]
#: modes whose endpoint table every participating host follows (remote endpoints)
TABLE_MODES: frozenset[str] = frozenset({"overlay"})


class NetworkFields(BaseModel):
    """A network's settings, defined once: the REST create body (:mod:`proto.rest`), the
    CLI's ``network create`` options, the topology file and the wire's
    :class:`NetworkSpec` are all made of these fields. A field added here reaches every
    one of them; only the code that acts on it is left to write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id = Field(description="network name, unique; used in topics and kernel names")
    mode: NetworkMode = Field("overlay", description="overlay, nat, transparent or internal")
    subnet: Subnet = Field(description="the network's IPv4 prefix, e.g. 10.1.0.0/24")
    gateway: IPv4 | None = Field(
        None, description="defaults to the subnet's first address (not for transparent)"
    )
    vni: Vni | None = Field(None, description="overlay only; allocated when omitted")
    mtu: Mtu | None = Field(None, description="defaults to 1450 (overlay) or 1500")
    uplink: IfName | None = Field(
        None, description="transparent: the host link the bridge enslaves"
    )
    uplinks: Annotated[dict[Id, IfName], Field(max_length=4096)] = Field(
        default_factory=dict, description="transparent: per-host uplink, overriding `uplink`"
    )
    ip_range: Cidr | None = Field(
        None, description="allocate endpoint addresses from this part of the subnet"
    )
    outbound_nat: bool = Field(
        False,
        description="overlay: endpoints reach outside through their host's uplink, masqueraded",
    )
    nat_exceptions: Annotated[tuple[Cidr, ...], Field(max_length=64)] = Field(
        (), description="overlay outbound NAT: destinations not translated (the subnet never is)"
    )
    # a field added after the first release is left out of frames while unset, so that
    # agents of the previous build (extra="forbid") keep accepting them
    dns: Dns | None = Field(
        None, description="DNS settings for the network's endpoints", exclude_if=unset
    )


class NetworkSpec(NetworkFields, Wire):
    """A network as every host sees it (retained on ``networks/{net}``): its
    :class:`NetworkFields` with the defaults filled in, at a generation.

    ``uplink`` (transparent): the host link the network's bridge enslaves, unless
    ``uplinks`` names another for a host. ``ip_range``: where endpoint addresses are
    allocated (default: the whole subnet). ``outbound_nat`` (overlay): endpoints reach
    outside through their own host's uplink, masqueraded, except towards the overlay's
    subnet and ``nat_exceptions``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    mode: NetworkMode
    mtu: Mtu = 1450
    kind: Literal["network"] = "network"
    generation: Generation = 1

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        if self.mode == "overlay" and self.vni is None:
            raise ValueError("an overlay network needs a VNI")
        if self.mode != "overlay" and self.vni is not None:
            raise ValueError(f"a {self.mode} network has no VNI")
        if self.gateway is not None:
            net = ipaddress.IPv4Network(self.subnet)
            gw = ipaddress.IPv4Address(self.gateway)
            if gw not in net:
                raise ValueError(f"gateway {gw} is outside subnet {net}")
            if gw in (net.network_address, net.broadcast_address):
                raise ValueError(f"gateway {gw} is the network or broadcast address of {net}")
        if self.mode == "nat" and self.gateway is None:
            raise ValueError("a nat network needs a gateway")
        if self.mode == "transparent" and self.uplink is None and not self.uplinks:
            raise ValueError("a transparent network needs an uplink")
        if self.mode != "transparent" and (self.uplink is not None or self.uplinks):
            raise ValueError(f"a {self.mode} network has no uplink")
        if self.mode != "overlay" and (self.outbound_nat or self.nat_exceptions):
            raise ValueError("outbound NAT is an option of overlay networks")
        if self.nat_exceptions and not self.outbound_nat:
            raise ValueError("NAT exceptions need outbound_nat")
        if self.ip_range is not None and not ipaddress.IPv4Network(self.ip_range).subnet_of(
            ipaddress.IPv4Network(self.subnet)
        ):
            raise ValueError(f"ip_range {self.ip_range} is outside subnet {self.subnet}")
        return self

    @property
    def prefixlen(self) -> int:
        # the subnet is held normalised (``a.b.c.d/n``): no need to parse it again
        return int(self.subnet.rpartition("/")[2])

    def uplink_of(self, host: str) -> str | None:
        return self.uplinks.get(host, self.uplink)

    @property
    def host_l3(self) -> bool:
        """Its subnet is routed in the namespace of each host that holds it: a gateway
        on its bridge (nat, internal), the uplink's addresses (transparent), or a route
        to its router for the untranslated replies of its NAT exceptions (overlay). Two
        such networks whose subnets overlap cannot share a host. An overlay's gateway
        and NAT otherwise live in a router namespace of its own: overlays may overlap."""
        if self.mode == "overlay":
            return bool(self.nat_exceptions)
        return self.mode == "transparent" or self.gateway is not None

    def overlaps(self, other: NetworkSpec) -> bool:
        return ipaddress.IPv4Network(self.subnet).overlaps(ipaddress.IPv4Network(other.subnet))


class PortFields(BaseModel):
    """A published port's settings (the REST body and the wire's :class:`PortMapping`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["tcp", "udp"] = "tcp"
    host_port: Port
    port: Port
    host_ip: IPv4 | None = Field(None, description="one host address; default: all")


class PortMapping(PortFields, Wire):
    """Host port → endpoint port (DNAT on the endpoint's host)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["port"] = "port"

    def clashes(self, other: PortMapping) -> bool:
        return (
            self.protocol == other.protocol
            and self.host_port == other.host_port
            and (self.host_ip is None or other.host_ip is None or self.host_ip == other.host_ip)
        )

    def __str__(self) -> str:
        where = f"{self.host_ip}:" if self.host_ip else ""
        return f"{where}{self.host_port}:{self.port}/{self.protocol}"


class LocalEndpoint(Wire):
    """An endpoint plumbed on this host: a veth whose inner end is ``eth{index}``."""

    kind: Literal["local_endpoint"] = "local_endpoint"
    id: Id
    network: Id
    index: Annotated[int, Field(ge=0, le=63)]
    mac: Mac
    ip: IPv4
    prefixlen: Annotated[int, Field(ge=1, le=30)]
    default_route: bool = False
    ports: Annotated[tuple[PortMapping, ...], Field(max_length=256)] = ()
    #: the endpoint's own DNS settings, before its network's (left out while unset)
    dns: Dns | None = Field(None, exclude_if=unset)
    #: the interface's name in the compartment (a runtime's choice; default ``eth{index}``)
    ifname: IfName | None = Field(None, exclude_if=unset)
    labels: Labels = Field((), exclude_if=empty)

    @property
    def inner(self) -> str:
        return self.ifname or names.inner(self.index)

    @model_validator(mode="after")
    def _consistent(self) -> LocalEndpoint:
        for i, p in enumerate(self.ports):
            if any(p.clashes(q) for q in self.ports[:i]):
                raise ValueError(f"endpoint {self.id} publishes {p} twice")
        return self


class Compartment(Wire):
    """A network compartment: one network namespace holding the endpoints; the agent's
    own, or (``netns``) one a container runtime made."""

    kind: Literal["compartment"] = "compartment"
    id: Id
    endpoints: Annotated[tuple[LocalEndpoint, ...], Field(max_length=64)] = ()
    netns: Netns | None = Field(None, exclude_if=unset)
    #: the runtime takes the inner ends from the host's namespace (Docker's libnetwork):
    #: the agent makes each pair there, the inner end bare (named
    #: :func:`~proto.names.handover`), and keeps the host end once the runtime moved the
    #: inner one away; the runtime sets the addresses and routes
    handover: bool = Field(False, exclude_if=empty)

    @model_validator(mode="after")
    def _consistent(self) -> Compartment:
        if self.handover and self.netns is not None:
            raise ValueError(f"compartment {self.id}: a handed-over one names no netns")
        idx = [e.index for e in self.endpoints]
        if len(idx) != len(set(idx)):
            raise ValueError(f"compartment {self.id} has two endpoints with one index")
        inner = [e.inner for e in self.endpoints]
        if len(inner) != len(set(inner)):
            raise ValueError(f"compartment {self.id} has two interfaces of one name")
        if sum(e.default_route for e in self.endpoints) > 1:
            raise ValueError(f"compartment {self.id} has more than one default route")
        return self


class HostDesired(Wire):
    """Everything one host must hold (retained on ``hosts/{host}/desired``)."""

    kind: Literal["desired"] = "desired"
    host: Id
    generation: Generation
    networks: Annotated[tuple[NetworkSpec, ...], Field(max_length=4096)] = ()
    compartments: Annotated[tuple[Compartment, ...], Field(max_length=16_384)] = ()
    #: the policies of its networks (README, "Policies")
    policies: Annotated[tuple[Policy, ...], Field(max_length=4096)] = Field((), exclude_if=empty)

    @model_validator(mode="after")
    def _consistent(self) -> HostDesired:
        nets = {n.id for n in self.networks}
        if len(nets) != len(self.networks):
            raise ValueError("a network appears twice")
        comps = [c.id for c in self.compartments]
        if len(comps) != len(set(comps)):
            raise ValueError("a compartment appears twice")
        eps: set[str] = set()
        for c in self.compartments:
            for e in c.endpoints:
                if e.network not in nets:
                    raise ValueError(f"endpoint {e.id} is in network {e.network}, not listed")
                if e.id in eps:
                    raise ValueError(f"endpoint {e.id} appears twice")
                eps.add(e.id)
        for p in self.policies:
            if p.network not in nets:
                raise ValueError(f"policy {p.id} is on network {p.network}, not listed")
        return self


class HostStatus(Wire):
    """What an agent reports (retained on ``hosts/{host}/status``)."""

    kind: Literal["status"] = "status"
    host: Id
    state: Literal["online", "offline"]
    version: Annotated[str, Field(max_length=64)] = ""
    vtep: IPv4 | None = None
    desired_generation: Generation = 0
    networks: Annotated[dict[Id, Generation], Field(max_length=4096)] = Field(default_factory=dict)
    errors: Annotated[tuple[Text, ...], Field(max_length=MAX_ERRORS)] = ()
    time: Annotated[float, Field(ge=0)] = 0.0
    #: runtime-owned compartments whose namespace is gone (the container died without
    #: a CNI DEL), with the namespace they named: the controller collects them
    gone: Annotated[dict[Id, Netns], Field(max_length=16_384)] = Field(
        default_factory=dict, exclude_if=empty
    )
    #: the broker the agent's session is on (a root broker or a relay): its URL, no
    #: credentials; left out while empty, so a frame of an agent that names none is as
    #: before (but a controller older than this field refuses one that names it)
    broker: Annotated[str, Field(max_length=256, pattern=BROKER_URL)] = Field("", exclude_if=empty)


class Event(Wire):
    """A notable event or an error on a host (``hosts/{host}/events``, not retained)."""

    kind: Literal["event"] = "event"
    host: Id
    level: Literal["debug", "info", "warning", "error"] = "info"
    event: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    detail: Text = ""
    time: Annotated[float, Field(ge=0)] = 0.0


Message = (
    NetworkSpec | NetworkSnapshot | SnapshotIndex | NetworkChange | HostDesired | HostStatus | Event
)

KINDS: dict[str, type[Wire]] = {
    "network": NetworkSpec,
    "snapshot": NetworkSnapshot,
    "snapshot_index": SnapshotIndex,
    "change": NetworkChange,
    "desired": HostDesired,
    "status": HostStatus,
    "event": Event,
}
