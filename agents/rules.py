"""The nftables rules a host needs, as plain values (pure: no I/O).

One table of Plexus's own, ``inet plexus``, with four base chains. Every rule counts
(a ``counter`` statement) and carries a comment ``LABEL #HASH``: the label says what
it is for, the hash of chain and expression makes it its identity, so that reading
the table back tells which rules are there without parsing nft's normalised output.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import proto
from proto import names, transit

from .model import Rule

FAMILY = "inet"
TABLE = "plexus"


@dataclass(frozen=True)
class Chain:
    name: str
    type: str
    hook: str
    prio: int


CHAINS = (
    Chain("prerouting", "nat", "prerouting", -100),
    Chain("output", "nat", "output", -100),
    Chain("postrouting", "nat", "postrouting", 100),
    Chain("forward", "filter", "forward", 0),
)
FORWARDING = {"net.ipv4.ip_forward": "1"}


def rule(chain: str, label: str, *expr: dict[str, Any]) -> Rule:
    body = json.dumps([*expr], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{chain}\n{body}".encode()).hexdigest()[:12]
    return Rule(chain, f"{label} #{digest}", body)


# -- expressions -----------------------------------------------------------------------


def _prefix(cidr: str) -> dict[str, Any]:
    net = ipaddress.IPv4Network(cidr)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


COUNTER: dict[str, Any] = {"counter": None}


# -- what each mode needs --------------------------------------------------------------


def masquerade(net: proto.NetworkSpec) -> Rule:
    """Traffic of the network's subnet leaving through any link but its own bridge
    leaves with the host's address."""
    br = names.bridge(net.id)
    expr = [
        _match(_ip("saddr"), _prefix(net.subnet)),
        _match(_meta("oifname"), br, "!="),
        COUNTER,
        {"masquerade": None},
    ]
    return rule("postrouting", f"{net.mode}:{net.id}:masquerade", *expr)


def router_masquerade(net: proto.NetworkSpec) -> Rule:
    """In an overlay's router namespace: what leaves for the host (``up``) leaves with
    the router's transit address, except towards ``nat_exceptions`` (kept untranslated:
    the host routes their replies back through the router). Overlays that overlap are
    thus told apart by their routers' addresses before they share the host's
    connection tracking."""
    expr = [_match(_meta("oifname"), "up"), _match(_ip("saddr"), _prefix(net.subnet))]
    keep = sorted(set(net.nat_exceptions))
    if keep:
        right = {"set": [_prefix(c) for c in keep]} if len(keep) > 1 else _prefix(keep[0])
        expr.append(_match(_ip("daddr"), right, "!="))
    expr += [COUNTER, {"masquerade": None}]
    return rule("postrouting", f"router:{net.id}:masquerade", *expr)


def transit_masquerade() -> Rule:
    """In the host's namespace: what the overlay routers send out leaves with the
    host's address (the routers' own transit addresses are link-local)."""
    return rule(
        "postrouting",
        "overlay:transit:masquerade",
        _match(_ip("saddr"), _prefix(str(transit.SUBNET))),
        _match(_meta("oifname"), names.TRANSIT_BRIDGE, "!="),
        COUNTER,
        {"masquerade": None},
    )


def hairpin(net: proto.NetworkSpec) -> Rule:
    """An endpoint reaching a published port of its own bridge (host address → DNAT
    back into the bridge) is masqueraded, so that the reply comes back the same way."""
    br = names.bridge(net.id)
    return rule(
        "postrouting",
        f"nat:{net.id}:hairpin",
        _match(_meta("oifname"), br),
        _match(_ip("saddr"), _prefix(net.subnet)),
        _match({"ct": {"key": "status"}}, "dnat", "in"),
        COUNTER,
        {"masquerade": None},
    )


def publish(ep: proto.LocalEndpoint, port: proto.PortMapping) -> list[Rule]:
    """DNAT of a published port: from other hosts (prerouting) and from this host
    itself (output), to any local address of the host or to ``host_ip``."""
    match: list[dict[str, Any]] = [_match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")]
    if port.host_ip is not None:
        match.append(_match(_ip("daddr"), port.host_ip))
    match += [
        _match(_meta("l4proto"), port.protocol),
        _match({"payload": {"protocol": port.protocol, "field": "dport"}}, port.host_port),
    ]
    to = {"dnat": {"family": "ip", "addr": ep.ip, "port": port.port}}
    label = f"port:{ep.id}:{port}"
    return [
        rule("prerouting", label, *match, COUNTER, to),
        # from the host itself; not from 127.0.0.0/8, which cannot be routed out
        rule(
            "output", label, *match, _match(_ip("daddr"), _prefix("127.0.0.0/8"), "!="), COUNTER, to
        ),
    ]


def isolate(net: proto.NetworkSpec) -> list[Rule]:
    """An internal network is host-only: nothing is routed into or out of it. Traffic
    between its own ports stays (with br_netfilter, bridged frames pass the forward
    hook too, in and out through the same bridge)."""
    br = names.bridge(net.id)
    iif, oif = _meta("iifname"), _meta("oifname")
    drop = {"drop": None}
    inbound = [_match(oif, br), _match(iif, br, "!="), COUNTER, drop]
    outbound = [_match(iif, br), _match(oif, br, "!="), COUNTER, drop]
    return [
        rule("forward", f"internal:{net.id}:in", *inbound),
        rule("forward", f"internal:{net.id}:out", *outbound),
    ]


def host_rules(doc: proto.HostDesired) -> tuple[frozenset[Rule] | None, dict[str, str]]:
    """The rules and sysctls ``doc`` asks of this host; (None, {}) when it needs none."""
    rules: list[Rule] = []
    forwarding = False
    for net in doc.networks:
        if net.mode == "nat":
            rules += [masquerade(net), hairpin(net)]
            forwarding = True
        elif net.mode == "overlay" and net.outbound_nat:
            # the router masquerades (router_masquerade), then the host does (once)
            rules.append(transit_masquerade())
            forwarding = True
        elif net.mode == "internal":
            rules += isolate(net)
    for comp in doc.compartments:
        for ep in comp.endpoints:
            for port in ep.ports:
                rules += publish(ep, port)
    return (frozenset(rules) if rules else None), (dict(FORWARDING) if forwarding else {})
