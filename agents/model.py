"""The kernel objects an agent owns, as plain values.

:class:`HostState` describes one host's Plexus-owned kernel state. The desired one is
computed from the wire documents (:mod:`agents.desired`); the actual one is read back
from the kernel by a driver. The planner diffs the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

FLOOD_MAC = "00:00:00:00:00:00"
#: a veth's ``netns`` when its inner end is in the host's namespace, bare, for a runtime
#: to take (Docker's libnetwork moves and configures it)
HANDOVER = "@handover"
#: a handed-over veth's ``netns`` once the runtime took its inner end (into a namespace
#: the agent does not read): the agent keeps the host end and makes no other
TAKEN = "@taken"


def satisfies(have: Veth | None, want: Veth) -> bool:
    """``have`` is what ``want`` asks for: equal, or a handed-over pair the runtime took."""
    if have == want:
        return True
    return (
        have is not None
        and want.netns == HANDOVER
        and have.netns == TAKEN
        and (have.endpoint, have.bridge, have.up) == (want.endpoint, want.bridge, want.up)
    )


@dataclass(frozen=True, slots=True)
class Bridge:
    name: str
    network: str
    mtu: int
    address: str | None  # "IP/prefix" of the gateway, or None
    #: transparent: the host link it enslaves (its addresses and routes move along)
    uplink: str | None = None
    #: it hands its bridged IPv4 to the host's netfilter hooks (``nf_call_iptables``):
    #: its network has ACL policies (:mod:`agents.acl`)
    filtered: bool = False


@dataclass(frozen=True, slots=True)
class Vxlan:
    name: str
    network: str
    vni: int
    local: str
    port: int
    mtu: int
    bridge: str


@dataclass(frozen=True, slots=True)
class Veth:
    """A veth pair: ``name`` on the host, plugged into ``bridge``; ``inner`` in ``netns``."""

    name: str
    endpoint: str
    bridge: str
    netns: str
    inner: str
    mac: str
    address: str  # "IP/prefix"
    mtu: int
    up: bool = True  # both ends administratively up


class Fdb(NamedTuple):
    """A static forwarding entry of a VXLAN device. A tuple, not a dataclass: hashing
    and comparing it stays in C, and a host holds tens of thousands."""

    device: str
    mac: str
    dst: str


class Neigh(NamedTuple):
    """A permanent neighbour entry of a VXLAN device (identity: device and IP)."""

    device: str
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of Plexus's nftables table. Identity is (chain, comment): the comment
    ends with a hash of the rule's expression, so a changed rule is another rule."""

    chain: str
    comment: str
    #: the rule's nft JSON expression list (known for desired rules only)
    expr: str = field(default="", compare=False, hash=False)


@dataclass
class HostState:
    namespaces: set[str] = field(default_factory=set)
    #: runtime-owned namespaces (:func:`proto.names.runtime_netns`: path and inode): the
    #: agent plumbs into them, never makes or deletes them. Read back: those asked for
    #: that are there, still with that inode
    runtime: set[str] = field(default_factory=set)
    bridges: dict[str, Bridge] = field(default_factory=dict)
    vxlans: dict[str, Vxlan] = field(default_factory=dict)
    veths: dict[str, Veth] = field(default_factory=dict)
    #: default gateway of each owned namespace (None: no default route)
    routes: dict[str, str | None] = field(default_factory=dict)
    fdb: set[Fdb] = field(default_factory=set)
    #: (device, ip) → entry: one neighbour per address
    neigh: dict[tuple[str, str], Neigh] = field(default_factory=dict)
    #: Plexus's nftables table: None when absent (or broken: a chain missing)
    rules: frozenset[Rule] | None = None
    #: the elements of the table's named sets and maps (set name → elements)
    elements: dict[str, frozenset[Any]] = field(default_factory=dict)
    #: Plexus's nftables table inside each router namespace (same meaning as
    #: ``rules``; read back, a namespace without the table has no entry)
    ns_rules: dict[str, frozenset[Rule] | None] = field(default_factory=dict)
    #: routes of the host's namespace through the overlay routers: prefix → router
    host_routes: dict[str, str] = field(default_factory=dict)
    #: sysctls of the host namespace the agent needs (it sets, never resets them)
    sysctls: dict[str, str] = field(default_factory=dict)
    #: resolver file of each owned namespace that has one: namespace → resolv.conf
    #: (from its networks' DNS settings; :mod:`agents.resolv`)
    resolv: dict[str, str] = field(default_factory=dict)
    #: packets and bytes counted by each rule (read only; not part of the comparison)
    counters: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    #: desired state refused because it would touch what the agent does not own
    refused: list[str] = field(default_factory=list, compare=False)
    #: IPv4 prefixes of the host namespace's addresses and routes on links Plexus does
    #: not own, as (prefix, device): what may stand in a network's way (read only)
    foreign: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def copy(self) -> HostState:
        """An independent copy: the containers are new, the items (immutable) shared."""
        return HostState(
            set(self.namespaces),
            set(self.runtime),
            dict(self.bridges),
            dict(self.vxlans),
            dict(self.veths),
            dict(self.routes),
            set(self.fdb),
            dict(self.neigh),
            self.rules,
            dict(self.elements),
            dict(self.ns_rules),
            dict(self.host_routes),
            dict(self.sysctls),
            dict(self.resolv),
            dict(self.counters),
            list(self.refused),
            self.foreign,
        )

    def count(self) -> int:
        return (
            len(self.namespaces)
            + len(self.bridges)
            + len(self.vxlans)
            + len(self.veths)
            + len(self.fdb)
            + len(self.neigh)
            + len(self.rules or ())
            + sum(map(len, self.elements.values()))
            + sum(len(r or ()) for r in self.ns_rules.values())
            + len(self.host_routes)
            + len(self.resolv)
        )
