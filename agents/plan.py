"""The reconcile planner: ``plan(desired, actual, complete) -> actions``. Pure: no I/O.

Deletions of stale objects are planned only when ``complete`` (the agent holds its
desired document and every table it follows, snapshot plus contiguous changes).
Replacing an object that is still desired but differs is an update, always allowed.
Actions are ordered so that each one's prerequisites come first; announcements
(:class:`Announce`) come last, once what they announce can carry traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from proto import names

from .model import (
    FLOOD_MAC,
    HANDOVER,
    Bridge,
    Fdb,
    HostState,
    Neigh,
    Rule,
    Veth,
    Vxlan,
    satisfies,
)

#: announcements a pass makes at most: a pass that adds more endpoints is a bulk change
#: (a cold start, a resynchronisation, a burst), whose other peers' ARP retries resolve
#: them (each announcement is a frame flooded to every port of its bridge)
ANNOUNCE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class AddNamespace:
    name: str


@dataclass(frozen=True, slots=True)
class DelNamespace:
    name: str


@dataclass(frozen=True, slots=True)
class AddBridge:
    bridge: Bridge


@dataclass(frozen=True, slots=True)
class SetBridge:
    old: Bridge
    new: Bridge


@dataclass(frozen=True, slots=True)
class DelBridge:
    name: str


@dataclass(frozen=True, slots=True)
class AddVxlan:
    vxlan: Vxlan


@dataclass(frozen=True, slots=True)
class DelVxlan:
    name: str


@dataclass(frozen=True, slots=True)
class AddVeth:
    veth: Veth


@dataclass(frozen=True, slots=True)
class DelVeth:
    name: str


@dataclass(frozen=True, slots=True)
class SetRoute:
    netns: str
    gateway: str | None
    #: the agent's default route it replaces (a runtime's namespace: only that one goes;
    #: a route of the runtime's own is never touched)
    was: str | None = None


@dataclass(frozen=True, slots=True)
class AddFdb:
    fdb: Fdb


@dataclass(frozen=True, slots=True)
class DelFdb:
    fdb: Fdb


@dataclass(frozen=True, slots=True)
class SetRules:
    """Replace Plexus's nftables table with exactly these rules, atomically (in the
    host's namespace, or in the owned namespace ``netns``)."""

    rules: frozenset[Rule]
    netns: str = ""
    #: the table's named sets and maps with their elements (the host's table only)
    elements: tuple[tuple[str, frozenset[Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class SetElements:
    """Change the elements of the host's table's sets and maps in place, in one
    transaction: (name, elements to add, elements to remove) each."""

    changes: tuple[tuple[str, frozenset[Any], frozenset[Any]], ...]


@dataclass(frozen=True, slots=True)
class DelRules:
    """Remove Plexus's nftables table (of the host, or of namespace ``netns``)."""

    netns: str = ""


@dataclass(frozen=True, slots=True)
class SetHostRoute:
    """A route of the host's namespace to ``prefix`` through router address ``via``."""

    prefix: str
    via: str


@dataclass(frozen=True, slots=True)
class DelHostRoute:
    prefix: str


@dataclass(frozen=True, slots=True)
class SetSysctl:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SetResolv:
    """Write an owned namespace's resolver file (``/etc/netns/NS/resolv.conf``)."""

    netns: str
    content: str


@dataclass(frozen=True, slots=True)
class DelResolv:
    netns: str


@dataclass(frozen=True, slots=True)
class AddNeigh:
    neigh: Neigh


@dataclass(frozen=True, slots=True)
class DelNeigh:
    neigh: Neigh


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the ports of ``bridge`` that ``ip`` is at ``mac`` (a gratuitous ARP sent
    onto the bridge, :mod:`agents.kernel.announce`): a peer that asked for ``ip`` before
    it could be answered, or holds another MAC for it, takes ``mac`` at once instead of
    at its next ARP retry. Planned with the veth or the remote neighbour that makes
    ``ip`` reachable. It changes no state: best effort, a frame that cannot leave is
    dropped, not a failure."""

    bridge: str
    ip: str
    mac: str


Action = (
    AddNamespace
    | DelNamespace
    | AddBridge
    | SetBridge
    | DelBridge
    | AddVxlan
    | DelVxlan
    | AddVeth
    | DelVeth
    | SetRoute
    | AddFdb
    | DelFdb
    | AddNeigh
    | DelNeigh
    | SetRules
    | SetElements
    | DelRules
    | SetHostRoute
    | DelHostRoute
    | SetSysctl
    | SetResolv
    | DelResolv
    | Announce
)


def _fdb_key(f: Fdb) -> tuple[str, str, str]:
    # unicast entries are unique per MAC; flood entries per destination
    return (f.device, f.mac, f.dst if f.mac == FLOOD_MAC else "")


@dataclass(frozen=True, slots=True)
class Entries:
    """The FDB entries and neighbour keys that may differ between desired and actual;
    every other one is known equal (the caller's guarantee: the last pass left actual
    equal to the desired state then, and only these changed since). A pass then costs
    O(change) for a host's tens of thousands of remote entries."""

    fdb: frozenset[Fdb]
    neigh: frozenset[tuple[str, str]]


def plan(
    desired: HostState, actual: HostState, *, complete: bool, entries: Entries | None = None
) -> list[Action]:
    dels: list[Action] = []
    adds: list[Action] = []

    # namespaces
    for ns in sorted(desired.namespaces - actual.namespaces):
        adds.append(AddNamespace(ns))
    stale_ns = actual.namespaces - desired.namespaces if complete else set()

    # bridges
    for name, br in sorted(desired.bridges.items()):
        have = actual.bridges.get(name)
        if have is None:
            adds.append(AddBridge(br))
        elif have != br:
            adds.append(SetBridge(have, br))

    # vxlan devices: any difference means re-creation (its FDB and neighbours go too)
    recreated_vx: set[str] = set()
    for name, vx in sorted(desired.vxlans.items()):
        have_vx = actual.vxlans.get(name)
        if have_vx != vx:
            if have_vx is not None:
                dels.append(DelVxlan(name))
                recreated_vx.add(name)
            adds.append(AddVxlan(vx))

    # veths: any difference means re-creation (a default route through it goes too)
    recreated_ns: set[str] = set()
    new_veths: list[Veth] = []
    for name, veth in sorted(desired.veths.items()):
        have_veth = actual.veths.get(name)
        if not satisfies(have_veth, veth):
            if have_veth is not None:
                dels.append(DelVeth(name))
                recreated_ns.add(have_veth.netns)
            recreated_ns.add(veth.netns)
            adds.append(AddVeth(veth))
            new_veths.append(veth)

    # default routes (a re-created veth takes the route through it along)
    for ns, gw in sorted(desired.routes.items(), key=lambda kv: kv[0]):
        fresh = (ns not in actual.namespaces and ns not in actual.runtime) or ns in recreated_ns
        route = None if fresh else actual.routes.get(ns)
        if route != gw:
            adds.append(SetRoute(ns, gw, route))

    # resolver files of the compartments (their networks' DNS settings)
    for ns, content in sorted(desired.resolv.items()):
        if actual.resolv.get(ns) != content:
            adds.append(SetResolv(ns, content))

    # forwarding entries and neighbours: set differences first (in C), so a pass costs
    # Python work for what differs, not for every entry a host holds
    # (with ``entries``, only those: see :class:`Entries`)
    have_fdb = actual.fdb
    have_nb = actual.neigh
    want_nb = desired.neigh
    if recreated_vx:
        entries = None
        have_fdb = {f for f in have_fdb if f.device not in recreated_vx}
        have_nb = {k: n for k, n in have_nb.items() if n.device not in recreated_vx}
    if entries is None:
        new_fdb = desired.fdb - have_fdb
        gone = have_fdb - desired.fdb
        same_nb = want_nb == have_nb  # in C; most passes change no neighbour
        nb_keys: Iterable[tuple[str, str]] = () if same_nb else want_nb.keys() | have_nb.keys()
    else:
        new_fdb = {f for f in entries.fdb if f in desired.fdb and f not in have_fdb}
        gone = {f for f in entries.fdb if f in have_fdb and f not in desired.fdb}
        nb_keys = entries.neigh
    # (not sorted: their order does not matter, and 20,000 of them cost 50 ms to sort)
    gone_fdb = {_fdb_key(f): f for f in gone}
    if gone_fdb:
        for f in new_fdb:
            old = gone_fdb.pop(_fdb_key(f), None)
            if old is not None:
                dels.append(DelFdb(old))
            adds.append(AddFdb(f))
    else:  # as at a cold start (tens of thousands): no loop of ours
        adds.extend(map(AddFdb, new_fdb))
    changed_nb: list[Neigh] = []
    stale_nb: list[Neigh] = []
    if not have_nb:  # a cold start: every neighbour is new, none replaced
        changed_nb = list(want_nb.values())
        adds.extend(map(AddNeigh, changed_nb))
    else:
        for k in nb_keys:
            want_n, have_n = want_nb.get(k), have_nb.get(k)
            if want_n is None:
                if have_n is not None:
                    stale_nb.append(have_n)
            elif want_n != have_n:
                changed_nb.append(want_n)
        for n in changed_nb:
            old_n = have_nb.get((n.device, n.ip))
            if old_n is not None:
                dels.append(DelNeigh(old_n))
            adds.append(AddNeigh(n))

    # sysctls first (forwarding before the NAT that needs it), the table last
    for name, value in sorted(desired.sysctls.items()):
        if actual.sysctls.get(name) != value:
            adds.insert(0, SetSysctl(name, value))
    if desired.rules is not None:
        if desired.rules != actual.rules or desired.elements.keys() != actual.elements.keys():
            adds.append(SetRules(desired.rules, elements=tuple(sorted(desired.elements.items()))))
        else:  # the same chains and sets: their elements change in place
            changes = []
            for name, elems in sorted(desired.elements.items()):
                held = actual.elements[name]
                if elems != held:
                    changes.append((name, elems - held, held - elems))
            if changes:
                adds.append(SetElements(tuple(changes)))
    # a router namespace's own table (a new namespace has none)
    for ns, want_rules in sorted(desired.ns_rules.items()):
        have_rules = actual.ns_rules.get(ns) if ns in actual.namespaces else None
        if want_rules is not None and want_rules != have_rules:
            adds.append(SetRules(want_rules, ns))
        elif want_rules is None and have_rules is not None:
            adds.append(DelRules(ns))
    # routes through the routers go with the transit bridge they use
    have_routes = actual.host_routes if names.TRANSIT_BRIDGE in actual.bridges else {}
    for prefix, via in sorted(desired.host_routes.items()):
        if have_routes.get(prefix) != via:
            adds.append(SetHostRoute(prefix, via))

    adds += announcements(desired, new_veths, changed_nb)

    if complete:
        stale: list[Action] = []
        if desired.rules is None and actual.rules is not None:
            stale.append(DelRules())
        stale += [DelHostRoute(r) for r in sorted(have_routes.keys() - desired.host_routes.keys())]
        stale += [DelNeigh(n) for n in stale_nb]
        stale += [DelFdb(f) for f in gone_fdb.values()]
        # also the veths of a namespace that goes: deleting a veth takes its peer at
        # once, while a namespace's deletion leaves its host ends to the kernel's
        # deferred cleanup (a read right after still finds them)
        stale += [DelVeth(n) for n in sorted(actual.veths.keys() - desired.veths.keys())]
        stale += [DelVxlan(n) for n in sorted(actual.vxlans.keys() - desired.vxlans.keys())]
        stale += [DelBridge(n) for n in sorted(actual.bridges.keys() - desired.bridges.keys())]
        stale += [DelResolv(n) for n in sorted(actual.resolv.keys() - desired.resolv.keys())]
        stale += [DelNamespace(n) for n in sorted(stale_ns)]
        dels = stale + dels
    return dels + adds


def announcements(desired: HostState, veths: list[Veth], neigh: list[Neigh]) -> list[Announce]:
    """The announcements of the addresses a pass makes reachable on a bridge: its new
    or changed remote neighbours' (on the bridge of their VXLAN device: nothing else
    tells that host's compartments), then its new veths' (local endpoints, router legs:
    each also announces itself when it comes up, ``arp_notify``, which a peer may miss
    while the new bridge port is not yet forwarding; not a handed-over pair, whose
    address is the runtime's to set); at most :data:`ANNOUNCE_LIMIT`."""
    out: list[Announce] = []
    for n in neigh[:ANNOUNCE_LIMIT]:
        vx = desired.vxlans.get(n.device)
        if vx is not None:
            out.append(Announce(vx.bridge, n.ip, n.mac))
    for v in veths[: max(0, ANNOUNCE_LIMIT - len(out))]:
        if v.address and v.netns != HANDOVER:
            out.append(Announce(v.bridge, v.address.partition("/")[0], v.mac))
    return out
