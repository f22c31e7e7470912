"""Which rule decides a flow (``plexus policy trace``), from the desired state alone.

Pure functions over :mod:`proto.policy`'s models and :class:`proto.EndpointRecord`\\ s
(no state, no I/O), implementing the semantics of :mod:`proto.policy`'s docstring
(README, "Policies"):

- a flow between two endpoints must be admitted twice: ``out`` at its source and
  ``in`` at its destination, each side by the policies of that endpoint's network;
- a policy *selects an endpoint in a direction* when it selects the endpoint (by id,
  by labels, or all of the network's) and has at least one rule in that direction;
  an endpoint no policy selects in a direction is open in it (``default-allow``);
- the selecting tiers are evaluated in ascending order; in a tier, among the rules of
  that direction of every selecting policy of the tier, the highest priority match
  decides, at one priority ``block`` before ``allow`` before ``pass`` (then the
  smaller policy id, so that the answer is always one rule); ``allow`` admits,
  ``block`` drops, ``pass`` goes on to the next tier; a tier with no match drops
  (``default-deny-of-tier``); a flow every selecting tier passed is admitted
  (``default-allow``);
- a rule matches when its protocol is ``any`` or the flow's; the endpoint's own port
  (the destination port for ``in``, the source port for ``out``) is in its
  ``local_ports`` and the other side's port in its ``remote_ports`` (an empty list:
  any port; a port the flow does not give matches no list); the other side's address
  is in one of its ``remote_addresses`` or is the address of an endpoint of the
  policy's network that its ``remote_selector`` matches (neither given: any address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from proto import EndpointRecord
from proto.policy import AclRule, PolicyFields, selects

Direction = Literal["in", "out"]
Protocol = Literal["tcp", "udp", "icmp"]
Verdict = Literal["allow", "block", "default-allow", "default-deny-of-tier"]

#: at one priority: block before allow before pass
_RANK = {"block": 2, "allow": 1, "pass": 0}


@dataclass(frozen=True)
class Flow:
    """One flow: its protocol, destination port and (optionally) source port."""

    protocol: Protocol
    port: int | None = None
    src_port: int | None = None


@dataclass(frozen=True)
class Decision:
    """What one side (one endpoint, one direction) decides, and why."""

    verdict: Verdict
    policy: str | None = None
    rule: str | None = None
    tier: int | None = None
    reason: str = ""
    steps: tuple[str, ...] = field(default=())

    @property
    def admitted(self) -> bool:
        return self.verdict in ("allow", "default-allow")


def in_ranges(port: int | None, ranges: Sequence[str]) -> bool:
    """``port`` is in one of ``ranges`` (``"80"``, ``"8000-8080"``); any port when there
    are none; an unknown port (None) in none."""
    if not ranges:
        return True
    if port is None:
        return False
    for r in ranges:
        lo, _, hi = r.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def remote_matches(rule: AclRule, remote_ip: str, members: Iterable[EndpointRecord]) -> bool:
    """The other side's address is one the rule names (prefixes, selected endpoints)."""
    if not rule.remote_addresses and rule.remote_selector is None:
        return True
    addr = ipaddress.IPv4Address(remote_ip)
    if any(addr in ipaddress.IPv4Network(p, strict=False) for p in rule.remote_addresses):
        return True
    sel = rule.remote_selector
    return sel is not None and any(m.ip == remote_ip and selects(sel, m.labels) for m in members)


def rule_matches(
    rule: AclRule,
    protocol: Protocol,
    local_port: int | None,
    remote_ip: str,
    remote_port: int | None,
    members: Iterable[EndpointRecord],
) -> bool:
    return (
        rule.protocol in ("any", protocol)
        and in_ranges(local_port, rule.local_ports)
        and in_ranges(remote_port, rule.remote_ports)
        and remote_matches(rule, remote_ip, members)
    )


def selecting(
    policies: Iterable[PolicyFields], network: str, local: EndpointRecord, direction: Direction
) -> list[PolicyFields]:
    """The policies of ``network`` that select ``local`` in ``direction``."""
    return [
        p
        for p in policies
        if p.network == network
        and p.selects(local.id, local.labels)
        and any(r.direction == direction for r in p.rules)
    ]


def decide(
    policies: Iterable[PolicyFields],
    network: str,
    members: Sequence[EndpointRecord],
    local: EndpointRecord,
    direction: Direction,
    flow: Flow,
    remote_ip: str,
) -> Decision:
    """What ``local`` (an endpoint of ``network``, whose endpoints are ``members``)
    decides in ``direction`` about ``flow`` with the other side at ``remote_ip``."""
    chosen = selecting(policies, network, local, direction)
    if not chosen:
        return Decision(
            "default-allow", reason=f"no policy selects {local.id} in direction {direction}"
        )
    local_port, remote_port = (
        (flow.port, flow.src_port) if direction == "in" else (flow.src_port, flow.port)
    )
    steps: list[str] = []
    for tier in sorted({p.tier for p in chosen}):
        best: tuple[tuple[int, int], PolicyFields, AclRule] | None = None
        # highest priority, then block > allow > pass, then the smaller policy id
        for p in sorted((p for p in chosen if p.tier == tier), key=lambda p: p.id):
            for r in p.rules:
                if r.direction != direction or not rule_matches(
                    r, flow.protocol, local_port, remote_ip, remote_port, members
                ):
                    continue
                key = (r.priority, _RANK[r.action])
                if best is None or key > best[0]:
                    best = (key, p, r)
        if best is None:
            steps.append(f"tier {tier}: no rule matches: drop")
            return Decision(
                "default-deny-of-tier",
                tier=tier,
                reason=f"tier {tier} selects {local.id} in direction {direction} "
                "and no rule of it matches",
                steps=tuple(steps),
            )
        _, p, r = best
        steps.append(f"tier {tier}: {r.action} by {p.id}/{r.name}")
        if r.action != "pass":
            verdict: Verdict = "allow" if r.action == "allow" else "block"
            return Decision(
                verdict,
                policy=p.id,
                rule=r.name,
                tier=tier,
                reason=f"rule {r.name} of policy {p.id} (tier {tier}): {r.action}",
                steps=tuple(steps),
            )
    return Decision(
        "default-allow", reason="every tier that selects it passed the flow", steps=tuple(steps)
    )


def trace(
    policies: Iterable[PolicyFields],
    src: tuple[str, EndpointRecord],
    src_members: Sequence[EndpointRecord],
    dst: tuple[str, EndpointRecord],
    dst_members: Sequence[EndpointRecord],
    flow: Flow,
) -> tuple[Decision, Decision]:
    """Both sides of a flow from ``src`` to ``dst`` (each: its network and its record;
    ``*_members``: the endpoints of that network): ``out`` at the source, ``in`` at
    the destination. The flow passes when both admit it."""
    pols = list(policies)
    (src_net, s), (dst_net, d) = src, dst
    out = decide(pols, src_net, src_members, s, "out", flow, d.ip)
    into = decide(pols, dst_net, dst_members, d, "in", flow, s.ip)
    return out, into
