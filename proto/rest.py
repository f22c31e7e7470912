"""Request and response bodies of the REST API (pydantic v2), and the topology document
(``plexus apply``) made of them: the contract between the controller and its clients."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from .models import NetworkFields, PortFields
from .parts import Dns, Netns
from .policy import Label, PolicyFields
from .types import Id, IfName, IPv4, Mac

_LABEL: TypeAdapter[str] = TypeAdapter(Label)


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        try:
            _LABEL.validate_python(f"{key}={val}")
        except ValueError:
            raise ValueError(
                f"label {key}={val!r}: a key is 1-63 letters, digits or ._/- starting with "
                "a letter or digit; a value at most 63 letters, digits or ._-"
            ) from None
    return value


#: an endpoint's labels as the REST API takes and shows them, ``{"app": "web"}``
LabelMap = Annotated[dict[str, str], Field(max_length=64), AfterValidator(_labels)]


def label_tuple(labels: dict[str, str]) -> tuple[str, ...]:
    """``{"tier": "1", "app": "web"}`` → ``("app=web", "tier=1")``: as rows and the wire
    hold them (:data:`proto.policy.Labels`)."""
    return tuple(sorted(f"{k}={v}" for k, v in labels.items()))


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


class LabelsUpdate(Body):
    labels: LabelMap = Field(description="the endpoint's labels, all of them")


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
    labels: LabelMap = Field(
        default_factory=dict, description="labels policies select the endpoint by"
    )


class Network(NetworkFields):
    """A network as the API shows it: its fields as the hosts get them (defaults filled
    in), and what the controller knows of it."""

    mtu: int  # always filled in
    generation: int
    table_generation: int
    endpoints: int
    hosts: list[str]
    pinned: list[str] = Field(
        default_factory=list, description="hosts holding it with or without endpoints"
    )
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
    labels: dict[str, str] = Field(default_factory=dict)
    generation: int
    convergence: Convergence | None = None


class PolicyCreate(PolicyFields):
    """``POST /v1/policies``, ``PUT /v1/policies/{id}``: a policy's fields, defined once
    in :class:`proto.policy.PolicyFields`."""


class PolicyView(PolicyFields):
    """A policy as the API shows it."""

    generation: int
    hosts: list[str] = Field(description="hosts whose desired document carries it")
    warnings: list[str] = Field(
        default_factory=list, description="selectors that match nothing, unknown endpoints"
    )
    created: float = 0.0
    convergence: Convergence | None = None


class TraceSide(Body):
    endpoint: str
    direction: Literal["in", "out"]
    verdict: Literal["allow", "block", "default-allow", "default-deny-of-tier"]
    admitted: bool
    policy: str | None = Field(None, description="the deciding policy")
    rule: str | None = Field(None, description="the deciding rule's name (direction-priority)")
    tier: int | None = None
    reason: str
    steps: list[str] = Field(default_factory=list, description="each selecting tier's outcome")


class Trace(Body):
    """``GET /v1/policies/trace``: which rule decides a flow, at each end."""

    src: str
    dst: str
    protocol: Literal["tcp", "udp", "icmp"]
    port: int | None
    src_port: int | None
    verdict: Literal["allow", "deny"]
    source: TraceSide
    destination: TraceSide


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
    broker: str = Field(default="", description="the broker its agent is on ('' unknown)")


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


class BatchOp(Body):
    """One operation of ``POST /v1/batch``: ``create`` with the ``body`` that ``POST
    /v1/{kind}s`` takes, or ``delete`` of ``id`` (``force`` as ``DELETE`` takes it)."""

    op: Literal["create", "delete"]
    kind: Literal["network", "compartment", "endpoint", "policy"]
    body: dict[str, Any] | None = None
    id: str | None = None
    force: bool = False

    @model_validator(mode="after")
    def _shape(self) -> BatchOp:
        if self.op == "create" and (self.body is None or self.id is not None):
            raise ValueError("a create takes a body (its id in the body), not an id")
        if self.op == "delete" and (self.id is None or self.body is not None):
            raise ValueError("a delete takes an id, not a body")
        return self


class BatchRequest(Body):
    """``POST /v1/batch``: operations validated together, in order, and committed in one
    transaction, all or nothing."""

    ops: list[BatchOp] = Field(min_length=1, max_length=50_000)


class BatchDone(Body):
    op: Literal["create", "delete"]
    kind: Literal["network", "compartment", "endpoint", "policy"]
    id: str
    object: dict[str, Any] | None = Field(
        None, description="what the create made, as the kind's own POST answers it"
    )


class BatchResponse(Body):
    results: list[BatchDone]
    convergence: Convergence | None = None


class BatchItemError(Body):
    index: int = Field(description="the operation's position in ops")
    error: str
    reason: str


class BatchRefused(Body):
    """A refused batch: nothing of it was committed; ``items`` says why, per operation."""

    error: str
    reason: str
    items: list[BatchItemError]


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
    broker: str = Field(default="", description="the broker its agent is on ('' unknown)")


class RelayStatus(Body):
    name: str
    state: Literal["connected", "disconnected"] = Field(
        description="its bridge to the root broker, as the bridge's notification says"
    )
    since: float = Field(description="when this controller saw it so (Unix time)")


class Status(Body):
    in_sync: bool
    hosts: list[HostSync]
    networks: list[NetworkStatus]
    store: Literal["sqlite", "postgresql"] = Field(
        default="sqlite", description="the store's kind (postgresql: several replicas)"
    )
    replica: str = Field(default="", description="the replica that answered")
    leader: str = Field(default="", description="the replica that publishes ('' while none)")
    epoch: int = Field(default=0, description="the leader's epoch: one more at every takeover")
    relays: list[RelayStatus] = Field(default_factory=list, description="the broker relays")


class NamedCompartment(CompartmentCreate):
    id: Id


class NamedEndpoint(EndpointCreate):
    id: Id


class Topology(Body):
    networks: tuple[NetworkCreate, ...] = ()
    compartments: tuple[NamedCompartment, ...] = ()
    endpoints: tuple[NamedEndpoint, ...] = ()
    policies: tuple[PolicyCreate, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Topology:
        for kind, items in (
            ("network", self.networks),
            ("compartment", self.compartments),
            ("endpoint", self.endpoints),
            ("policy", self.policies),
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
            ("policies", self.policies),
        ):
            for item in items:
                out.append(f"[[{table}]]")
                for k, v in item.model_dump(mode="json", exclude_none=True).items():
                    out.append(f"{k} = {_toml(v)}")
                out.append("")
        return "\n".join(out)


def _toml(value: Any) -> str:
    """A JSON value as TOML (inline tables and arrays; strings as JSON writes them, which
    TOML's basic strings read)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)
