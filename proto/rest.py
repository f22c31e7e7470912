"""Request and response bodies of the REST API (pydantic v2), and the topology document
(``plexus apply``) made of them: the contract between the controller and its clients."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .models import NetworkFields, PortFields
from .parts import Dns, Netns
from .types import Id, IfName, IPv4, Mac


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkCreate(NetworkFields):
    """``POST /v1/networks``: the network's fields, defined once in
    :class:`proto.models.NetworkFields`."""


class PublishedPort(PortFields):
    """A port mapping: ``host_ip:host_port`` on the endpoint's host → the endpoint's
    ``port`` (nat networks)."""


class PortsUpdate(Body):
    ports: list[PublishedPort] = Field(max_length=256)


class CompartmentCreate(Body):
    id: Id | None = Field(default=None, description="generated when omitted")
    host: Id
    netns: Netns | None = Field(
        default=None,
        description="a namespace a container runtime made (the agent plumbs into it, "
        "never creates or deletes it); omitted: the agent makes one",
    )
    handover: bool = Field(
        default=False,
        description="the runtime takes each interface from the host's namespace (Docker): "
        "the agent makes it there bare; the runtime moves it and sets its addresses",
    )


class EndpointCreate(Body):
    id: Id | None = Field(default=None, description="generated when omitted")
    network: Id
    compartment: Id
    ip: IPv4 | None = Field(default=None, description="static address; allocated when omitted")
    mac: Mac | None = Field(default=None, description="generated (locally administered) if omitted")
    default_route: bool | None = Field(
        default=None, description="route the compartment's default via this endpoint's gateway"
    )
    ports: list[PublishedPort] = Field(
        default_factory=list, description="nat networks: published ports", max_length=256
    )
    dns: Dns | None = Field(
        default=None, description="the endpoint's own DNS settings, before its network's"
    )
    ifname: IfName | None = Field(
        default=None, description="the interface's name in the compartment (default eth{index})"
    )


class Network(NetworkFields):
    """A network as the API shows it: its fields as the hosts get them (defaults filled
    in), and what the controller knows of it."""

    mtu: int  # always filled in
    generation: int
    table_generation: int
    endpoints: int
    hosts: list[str]
    convergence: Convergence | None = None


class Compartment(Body):
    id: str
    host: str
    endpoints: list[str]
    netns: Netns | None = None
    handover: bool = False
    convergence: Convergence | None = None


class Endpoint(Body):
    id: str
    network: str
    compartment: str
    host: str
    ip: str
    prefixlen: int
    mac: str
    interface: str
    host_interface: str = Field(description="the host end of its veth, on the network's bridge")
    host_mac: str
    mtu: int
    gateway: str | None
    default_route: bool
    ports: list[str] = Field(default_factory=list, description="HOST_IP:HOST_PORT:PORT/PROTO")
    dns: Dns | None = None
    resolver: Dns | None = Field(
        None, description="what its compartment's resolver gets: its own DNS, else its network's"
    )
    generation: int
    convergence: Convergence | None = None


class Host(Body):
    id: str
    state: Literal["online", "offline"]
    version: str
    vtep: str | None
    desired_generation: int
    applied_generation: int
    applied_networks: dict[str, int]
    in_sync: bool
    errors: list[str]
    last_seen: float
    compartments: int


class HostToken(Body):
    """``GET /v1/hosts/{host}/token``: the credential a host's CNI plugin uses, which
    may act only on that host's compartments and endpoints."""

    host: str
    token: str = Field(description="send as Authorization: Bearer TOKEN")


class HostPending(Body):
    host: str
    state: Literal["online", "offline"]
    waiting_for: list[str]


class Convergence(Body):
    converged: bool
    elapsed_ms: float
    hosts: list[str] = Field(description="online hosts the change affected")
    pending: list[HostPending] = Field(description="hosts that had not applied it in time")
    offline: list[str] = Field(description="affected hosts that are offline (not waited for)")


class Deleted(Body):
    id: str
    deleted: Literal[True] = True
    convergence: Convergence | None = None


class ErrorBody(Body):
    error: str
    reason: str


class NetworkStatus(Body):
    id: str
    generation: int
    hosts: int
    hosts_in_sync: int
    in_sync: bool


class HostSync(Body):
    id: str
    state: Literal["online", "offline"]
    in_sync: bool
    behind: list[str]


class Status(Body):
    in_sync: bool
    hosts: list[HostSync]
    networks: list[NetworkStatus]


class NamedCompartment(CompartmentCreate):
    id: Id


class NamedEndpoint(EndpointCreate):
    id: Id


class Topology(Body):
    networks: tuple[NetworkCreate, ...] = ()
    compartments: tuple[NamedCompartment, ...] = ()
    endpoints: tuple[NamedEndpoint, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Topology:
        for kind, items in (
            ("network", self.networks),
            ("compartment", self.compartments),
            ("endpoint", self.endpoints),
        ):
            ids = [i.id for i in items]
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"{kind} ids repeated: {', '.join(sorted(dup))}")
        return self

    def hosts(self) -> list[str]:
        return sorted({c.host for c in self.compartments})

    def to_toml(self) -> str:
        out = []
        for table, items in (
            ("networks", self.networks),
            ("compartments", self.compartments),
            ("endpoints", self.endpoints),
        ):
            for item in items:
                out.append(f"[[{table}]]")
                for k, v in item.model_dump(exclude_none=True).items():
                    out.append(f"{k} = {json.dumps(v)}")
                out.append("")
        return "\n".join(out)
