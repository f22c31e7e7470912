"""The ACL policies of a host's endpoints as rules of Plexus's table (pure: no I/O).

The semantics are :mod:`proto.policy`'s. The dataplane, in the host's ``inet plexus``
table, with the networks' bridges calling it for bridged IPv4 (a bridge's own
``nf_call_iptables``: the host's other bridges are left alone):

- ``acl_pre`` (prerouting, before NAT) looks up the packet's bridge and source address
  in the map ``acl_out``: a local endpoint selected in direction ``out`` → its chain.
- ``acl_fwd`` (forward) and ``acl_host`` (output: from the host itself) look up the
  bridge and destination address in ``acl_in``.
- An endpoint chain (``e…``) admits replies of admitted connections, drops invalid
  ones, then jumps to one group chain per tier; a flow no tier decided is admitted.
- A group chain (``g…``) holds the rules of every policy of one tier that selects the
  endpoint, highest priority first: ``allow`` accepts, ``block`` drops, ``pass``
  returns to the endpoint chain (next tier); its end drops (the tier selected it).
- A label selector is a named set (``s…``) of addresses, updated in place as endpoints
  come, go or change labels.

The structure (rules, maps, which sets) is compiled once per desired document
(:class:`Compiled`); the sets are refilled (:func:`fill`) only when a table they read
changed, so a pass for anything else costs no ACL work.

Chains are named by a hash of their content, so endpoints that the same policies
select share them: a new such endpoint costs one map element, a membership change one
set element. Two directions are checked in two hooks (out before in), so that an
``accept`` in one never skips the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import proto
from proto import names
from proto.policy import AclRule, Policy, selects

from .model import Rule
from .rules import Chain
from .tables import Table

#: the nflog group of rules with ``log``
LOG_GROUP = 100
#: map names (``ifname . ipv4_addr : verdict``)
IN_MAP, OUT_MAP = "acl_in", "acl_out"
#: at one priority: block before allow before pass
_ORDER = {"block": 0, "allow": 1, "pass": 2}
_VERDICT: dict[str, dict[str, Any]] = {
    "allow": {"accept": None},
    "block": {"drop": None},
    "pass": {"return": None},
}


def _h(*parts: object) -> str:
    body = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def _m(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _field(protocol: str, name: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": name}}


def _ports(ranges: Iterable[str]) -> Any:
    items: list[Any] = []
    for r in ranges:
        lo, _, hi = r.partition("-")
        items.append({"range": [int(lo), int(hi)]} if hi else int(lo))
    return items[0] if len(items) == 1 and isinstance(items[0], int) else {"set": items}


def _prefixes(cidrs: Iterable[str]) -> dict[str, Any]:
    out = []
    for c in cidrs:
        addr, _, plen = c.partition("/")
        out.append({"prefix": {"addr": addr, "len": int(plen or 32)}})
    return {"set": out}


COUNTER: dict[str, Any] = {"counter": None}


@dataclass
class Acl:
    """What the policies ask of a host's table: rules (every chain's), set and map
    elements, and the networks whose bridges must call the table."""

    rules: list[Rule] = field(default_factory=list)
    elements: dict[str, frozenset[Any]] = field(default_factory=dict)
    filtered: set[str] = field(default_factory=set)
    #: each named set's network and selector
    selectors: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    _chains: set[str] = field(default_factory=set)

    def chain(self, prefix: str, body: list[tuple[str, list[dict[str, Any]]]]) -> str:
        """The chain holding ``body`` ((label, expression) pairs), made once."""
        name = prefix + _h(body)
        if name not in self._chains:
            self._chains.add(name)
            # the table is written in (chain, comment) order: the position leads
            self.rules += [
                _rule(name, f"{i:04d} {label}", expr) for i, (label, expr) in enumerate(body)
            ]
        return name


def _rule(chain: str, label: str, expr: list[dict[str, Any]]) -> Rule:
    body = json.dumps(expr, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{chain}\n{body}".encode()).hexdigest()[:12]
    return Rule(chain, f"{label} #{digest}", body)


class Members:
    """The named sets a host's rules use: each selector's name, and what it selects
    (the addresses are filled per pass: :func:`fill`)."""

    def __init__(self, acl: Acl, network: str) -> None:
        self.acl = acl
        self.network = network

    def set_of(self, selector: tuple[str, ...]) -> str:
        name = "s" + _h(self.network, sorted(selector))
        self.acl.selectors[name] = (self.network, selector)
        return name


def _group_rules(
    direction: str, rule: AclRule, policy: Policy, members: Members
) -> list[tuple[str, list[dict[str, Any]]]]:
    remote, local = ("saddr", "dport") if direction == "in" else ("daddr", "sport")
    remote_port = "sport" if direction == "in" else "dport"
    match: list[dict[str, Any]] = []
    if rule.protocol != "any":
        match.append(_m({"meta": {"key": "l4proto"}}, rule.protocol))
    if rule.local_ports:
        match.append(_m(_field(rule.protocol, local), _ports(rule.local_ports)))
    if rule.remote_ports:
        match.append(_m(_field(rule.protocol, remote_port), _ports(rule.remote_ports)))
    tail: list[dict[str, Any]] = [COUNTER]
    if rule.log:
        prefix = f"plexus {policy.id}:{rule.name} "[:127]
        tail.append({"log": {"prefix": prefix, "group": LOG_GROUP}})
    tail.append(_VERDICT[rule.action])
    label = f"acl:{policy.id}:{rule.name}"
    alternatives: list[list[dict[str, Any]]] = []
    if rule.remote_selector is not None:
        ref = "@" + members.set_of(rule.remote_selector)
        alternatives.append([_m(_field("ip", remote), ref)])
    if rule.remote_addresses:
        alternatives.append([_m(_field("ip", remote), _prefixes(rule.remote_addresses))])
    if rule.remote_selector is None and not rule.remote_addresses:
        alternatives.append([])
    return [(label, match + alt + tail) for alt in alternatives]


_CT_STATE = {"ct": {"key": "state"}}
PRELUDE: list[tuple[str, list[dict[str, Any]]]] = [
    ("acl:established", [_m(_CT_STATE, ["established", "related"], "in"), {"accept": None}]),
    ("acl:invalid", [_m(_CT_STATE, "invalid", "in"), COUNTER, {"drop": None}]),
]


def _endpoint_chain(
    acl: Acl, direction: str, selecting: list[Policy], members: Members
) -> str | None:
    """The chain of an endpoint that ``selecting`` select, for ``direction`` (None: no
    rule of theirs is for that direction: the endpoint is open in it)."""
    tiers: dict[int, list[tuple[AclRule, Policy]]] = {}
    for p in selecting:
        for r in p.rules:
            if r.direction == direction:
                tiers.setdefault(p.tier, []).append((r, p))
    if not tiers:
        return None
    body = list(PRELUDE)
    for tier in sorted(tiers):
        rules = sorted(
            tiers[tier], key=lambda rp: (-rp[0].priority, _ORDER[rp[0].action], rp[1].id)
        )
        group: list[tuple[str, list[dict[str, Any]]]] = []
        for r, p in rules:
            group += _group_rules(direction, r, p, members)
        group.append((f"acl:tier{tier}:end", [COUNTER, {"drop": None}]))
        body.append((f"acl:tier{tier}", [{"jump": {"target": acl.chain("g", group)}}]))
    body.append(("acl:passed", [{"accept": None}]))
    return acl.chain("e", body)


def _records(
    net: proto.NetworkSpec, doc: proto.HostDesired, tables: Mapping[str, Table]
) -> list[tuple[str, tuple[str, ...]]]:
    """(address, labels) of the network's endpoints this host knows: its table's
    (every host's) or, for a network without a table, its own."""
    table = tables.get(net.id)
    if net.mode in proto.TABLE_MODES and table is not None:
        return [(r.ip, r.labels) for r in table.records.values()]
    return [
        (ep.ip, ep.labels)
        for comp in doc.compartments
        for ep in comp.endpoints
        if ep.network == net.id
    ]


#: the base chains of the ACL (beside the table's others: an accept in one of them
#: does not skip another)
ACL_CHAINS = (
    Chain("acl_pre", "filter", "prerouting", -150),
    Chain("acl_fwd", "filter", "forward", 10),
    Chain("acl_host", "filter", "output", 10),
)
DISPATCH = (
    ("acl_pre", "acl:dispatch:out", "iifname", "saddr", OUT_MAP),
    ("acl_fwd", "acl:dispatch:in", "oifname", "daddr", IN_MAP),
    ("acl_host", "acl:dispatch:in", "oifname", "daddr", IN_MAP),
)


class Compiled:
    """The last document's compiled structure (rules, map elements, which sets): the
    agent compiles again only when the document changed; a pass for a table change
    refills the sets only."""

    def __init__(self) -> None:
        self.doc: proto.HostDesired | None = None
        self.acl: Acl | None = None
        #: the last filled result and the table generations it read
        self.filled: tuple[tuple[tuple[str, int], ...], Acl] | None = None


def compile_acl(
    doc: proto.HostDesired, tables: Mapping[str, Table], last: Compiled | None = None
) -> Acl | None:
    """The host's ACL rules and elements; None when no policy is on its networks."""
    if not doc.policies:
        return None
    if last is None:
        return fill(_structure(doc), doc, tables)
    if last.doc is not doc:
        last.doc, last.acl, last.filled = doc, _structure(doc), None
    assert last.acl is not None
    # the sets read only the tables of the networks they select in (and the document)
    read = tuple(
        sorted(
            (net, tables[net].generation)
            for net in {n for n, _ in last.acl.selectors.values()}
            if net in tables
        )
    )
    if last.filled is None or last.filled[0] != read:
        last.filled = (read, fill(last.acl, doc, tables))
    return last.filled[1]


def fill(structure: Acl, doc: proto.HostDesired, tables: Mapping[str, Table]) -> Acl:
    """``structure`` with its sets' addresses, from the tables' records (a network
    without a table: the host's own endpoints)."""
    nets = {n.id: n for n in doc.networks}
    records: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    elements = {IN_MAP: structure.elements[IN_MAP], OUT_MAP: structure.elements[OUT_MAP]}
    for name, (network, selector) in structure.selectors.items():
        if network not in records:
            records[network] = _records(nets[network], doc, tables)
        elements[name] = frozenset(
            ip for ip, labels in records[network] if selects(selector, labels)
        )
    return Acl(structure.rules, elements, structure.filtered, structure.selectors)


def _structure(doc: proto.HostDesired) -> Acl:
    """Rules, map elements and named sets (without their addresses) of ``doc``."""
    acl = Acl()
    by_net: dict[str, list[Policy]] = {}
    for p in doc.policies:
        by_net.setdefault(p.network, []).append(p)
    ins: set[tuple[str, str, str]] = set()
    outs: set[tuple[str, str, str]] = set()
    members: dict[str, Members] = {}
    nets = {n.id: n for n in doc.networks}
    #: (network, direction, the selecting policies) → its endpoint chain: endpoints
    #: the same policies select are compiled once
    made: dict[tuple[str, str, tuple[str, ...]], str | None] = {}
    for comp in doc.compartments:
        for ep in comp.endpoints:
            policies = by_net.get(ep.network)
            if not policies:
                continue
            selecting = [p for p in policies if p.selects(ep.id, ep.labels)]
            if not selecting:
                continue
            if ep.network not in members:
                members[ep.network] = Members(acl, ep.network)
            br = names.bridge(ep.network)
            key = tuple(p.id for p in selecting)
            for direction, into in (("in", ins), ("out", outs)):
                k = (ep.network, direction, key)
                if k not in made:
                    made[k] = _endpoint_chain(acl, direction, selecting, members[ep.network])
                chain = made[k]
                if chain is not None:
                    into.add((br, ep.ip, chain))
    for net_id in by_net:
        if net_id in nets:
            acl.filtered.add(net_id)
    for chain, label, meta, addr, table in DISPATCH:
        expr = {"concat": [{"meta": {"key": meta}}, _field("ip", addr)]}
        acl.rules.append(_rule(chain, label, [{"vmap": {"key": expr, "data": "@" + table}}]))
    acl.elements[IN_MAP] = frozenset(ins)
    acl.elements[OUT_MAP] = frozenset(outs)
    return acl
