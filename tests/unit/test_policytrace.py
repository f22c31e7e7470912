"""The trace evaluator (``controller.policytrace``) against the semantics of
``proto.policy``'s docstring, with plain values."""

from __future__ import annotations

from typing import Any

import pytest

from controller.policytrace import Decision, Direction, Flow, decide, in_ranges, trace
from proto import EndpointRecord
from proto.policy import PolicyFields

NET = "blue"


def rec(ident: str, ip: str, *labels: str) -> EndpointRecord:
    return EndpointRecord(
        id=ident, host="h1", mac="02:00:00:00:00:01", ip=ip, gen=1, labels=tuple(labels)
    )


WEB = rec("web", "10.1.0.10", "app=web", "tier=front")
DB = rec("db", "10.1.0.20", "app=db")
CLI = rec("cli", "10.1.0.30", "app=cli")
MEMBERS = [WEB, DB, CLI]


def pol(ident: str, *rules: dict[str, Any], **kw: Any) -> PolicyFields:
    return PolicyFields.model_validate({"id": ident, "network": NET, "rules": rules, **kw})


def rule(priority: int, direction: str, action: str, **kw: Any) -> dict[str, Any]:
    return {"priority": priority, "direction": direction, "action": action, **kw}


def side(
    policies: list[PolicyFields],
    local: EndpointRecord,
    direction: Direction,
    flow: Flow,
    remote: EndpointRecord | str,
) -> Decision:
    ip = remote if isinstance(remote, str) else remote.ip
    return decide(policies, NET, MEMBERS, local, direction, flow, ip)


TCP80 = Flow("tcp", 80, 40000)


def test_an_endpoint_no_policy_selects_is_open() -> None:
    d = side([], WEB, "in", TCP80, CLI)
    assert (d.verdict, d.policy, d.admitted) == ("default-allow", None, True)
    other = pol("p", rule(1, "in", "block"), selector=["app=db"])
    assert side([other], WEB, "in", TCP80, CLI).verdict == "default-allow"


def test_selection_isolates_per_direction() -> None:
    """A policy with only ``in`` rules closes ``in`` (what no rule allows) and leaves
    ``out`` open."""
    p = pol("p", rule(10, "in", "allow", protocol="tcp", local_ports=["80"]))
    assert side([p], WEB, "in", TCP80, CLI).verdict == "allow"
    d = side([p], WEB, "in", Flow("tcp", 22), CLI)
    assert (d.verdict, d.tier, d.admitted) == ("default-deny-of-tier", 100, False)
    assert side([p], WEB, "out", Flow("tcp", 22), CLI).verdict == "default-allow"


def test_the_highest_priority_match_wins_and_ties_go_block_allow_pass() -> None:
    p = pol(
        "p",
        rule(10, "in", "allow"),
        rule(20, "in", "block", protocol="tcp", local_ports=["80"]),
    )
    d = side([p], WEB, "in", TCP80, CLI)
    assert (d.verdict, d.policy, d.rule) == ("block", "p", "in-20")
    assert side([p], WEB, "in", Flow("udp", 53), CLI).rule == "in-10"
    # one priority, three policies of one tier: block, then allow, then pass
    a, b, c = (
        pol(n, rule(5, "in", act)) for n, act in (("a", "pass"), ("b", "allow"), ("c", "block"))
    )
    assert side([a, b, c], WEB, "in", TCP80, CLI).policy == "c"
    assert side([a, b], WEB, "in", TCP80, CLI).verdict == "allow"
    # same action and priority: the smaller policy id decides
    z, y = pol("z", rule(5, "in", "allow")), pol("y", rule(5, "in", "allow"))
    assert side([z, y], WEB, "in", TCP80, CLI).policy == "y"


def test_tiers_ascend_pass_moves_on_and_a_tier_without_match_drops() -> None:
    t1 = pol("t1", rule(100, "in", "pass", remote_selector=["app=cli"]), tier=10)
    t2 = pol("t2", rule(1, "in", "allow", protocol="tcp", local_ports=["80"]), tier=20)
    d = side([t2, t1], WEB, "in", TCP80, CLI)
    assert (d.verdict, d.policy, d.tier) == ("allow", "t2", 20)
    assert d.steps == ("tier 10: pass by t1/in-100", "tier 20: allow by t2/in-1")
    # from db, tier 10 has no match: dropped there, tier 20 never asked
    d = side([t2, t1], WEB, "in", TCP80, DB)
    assert (d.verdict, d.tier, d.policy) == ("default-deny-of-tier", 10, None)
    # a block in a lower tier wins over an allow in a higher one
    t0 = pol("t0", rule(0, "in", "block"), tier=0)
    assert side([t2, t1, t0], WEB, "in", TCP80, CLI).verdict == "block"


def test_every_selecting_tier_passed_admits() -> None:
    t1 = pol("t1", rule(1, "out", "pass"), tier=1)
    t2 = pol("t2", rule(1, "out", "pass"), tier=2)
    d = side([t1, t2], WEB, "out", TCP80, DB)
    assert (d.verdict, d.admitted, len(d.steps)) == ("default-allow", True, 2)


@pytest.mark.parametrize(
    ("port", "ranges", "inside"),
    [
        (80, [], True),
        (80, ["80"], True),
        (81, ["80"], False),
        (8000, ["8000-8080"], True),
        (8080, ["8000-8080"], True),
        (8081, ["8000-8080"], False),
        (443, ["80", "400-500"], True),
        (None, ["80"], False),
        (None, [], True),
    ],
)
def test_port_ranges(port: int | None, ranges: list[str], inside: bool) -> None:
    assert in_ranges(port, ranges) is inside


def test_local_ports_are_the_endpoints_own_and_remote_ports_the_other_sides() -> None:
    """``in``: the destination port is local; ``out``: the source port is."""
    inbound = pol(
        "i",
        rule(1, "in", "allow", protocol="tcp", local_ports=["80"], remote_ports=["40000-40100"]),
    )
    assert side([inbound], WEB, "in", Flow("tcp", 80, 40050), CLI).verdict == "allow"
    assert side([inbound], WEB, "in", Flow("tcp", 80, 50000), CLI).verdict != "allow"
    assert side([inbound], WEB, "in", Flow("tcp", 80), CLI).verdict != "allow"  # no src port
    outbound = pol("o", rule(1, "out", "allow", protocol="tcp", remote_ports=["5432"]))
    assert side([outbound], WEB, "out", Flow("tcp", 5432, 40000), DB).verdict == "allow"
    assert side([outbound], WEB, "out", Flow("tcp", 80, 5432), DB).verdict != "allow"
    by_src = pol("s", rule(1, "out", "allow", protocol="udp", local_ports=["53"]))
    assert side([by_src], WEB, "out", Flow("udp", 9999, 53), DB).verdict == "allow"


def test_protocols() -> None:
    p = pol("p", rule(2, "in", "allow", protocol="icmp"), rule(1, "in", "allow", protocol="udp"))
    assert side([p], WEB, "in", Flow("icmp"), CLI).rule == "in-2"
    assert side([p], WEB, "in", Flow("udp", 53), CLI).rule == "in-1"
    assert side([p], WEB, "in", TCP80, CLI).verdict == "default-deny-of-tier"
    anyp = pol("a", rule(1, "in", "allow"))
    assert all(
        side([anyp], WEB, "in", f, CLI).verdict == "allow"
        for f in (Flow("icmp"), TCP80, Flow("udp", 1))
    )


def test_remote_selectors_resolve_to_the_networks_matching_endpoints() -> None:
    p = pol("p", rule(1, "in", "allow", remote_selector=["app=cli"]))
    assert side([p], WEB, "in", TCP80, CLI).verdict == "allow"
    assert side([p], WEB, "in", TCP80, DB).verdict == "default-deny-of-tier"
    # an address no member of the network has matches no selector
    assert side([p], WEB, "in", TCP80, "10.9.9.9").verdict == "default-deny-of-tier"
    every = pol("e", rule(1, "in", "allow", remote_selector=[]))  # empty: all members
    assert side([every], WEB, "in", TCP80, DB).verdict == "allow"
    assert side([every], WEB, "in", TCP80, "10.9.9.9").verdict == "default-deny-of-tier"
    two = pol("t", rule(1, "in", "allow", remote_selector=["app=web", "tier=back"]))
    assert side([two], DB, "in", TCP80, WEB).verdict == "default-deny-of-tier"


def test_remote_prefixes_and_their_union_with_a_selector() -> None:
    p = pol("p", rule(1, "out", "allow", remote_addresses=["192.168.0.0/16"]))
    assert side([p], WEB, "out", TCP80, "192.168.4.4").verdict == "allow"
    assert side([p], WEB, "out", TCP80, "10.1.0.20").verdict == "default-deny-of-tier"
    both = pol(
        "b",
        rule(1, "out", "allow", remote_addresses=["192.168.0.0/16"], remote_selector=["app=db"]),
    )
    assert side([both], WEB, "out", TCP80, "192.168.4.4").verdict == "allow"
    assert side([both], WEB, "out", TCP80, DB).verdict == "allow"
    assert side([both], WEB, "out", TCP80, CLI).verdict == "default-deny-of-tier"


def test_policies_select_by_id_by_labels_or_all() -> None:
    by_id = pol("i", rule(1, "in", "block"), endpoints=["db"])
    assert side([by_id], DB, "in", TCP80, WEB).verdict == "block"
    assert side([by_id], WEB, "in", TCP80, DB).verdict == "default-allow"
    by_label = pol("l", rule(1, "in", "block"), selector=["tier=front"])
    assert side([by_label], WEB, "in", TCP80, DB).verdict == "block"
    assert side([by_label], DB, "in", TCP80, WEB).verdict == "default-allow"
    either = pol("x", rule(1, "in", "block"), selector=["app=cli"], endpoints=["db"])
    assert [side([either], e, "in", TCP80, WEB).verdict for e in (DB, CLI, WEB)] == [
        "block",
        "block",
        "default-allow",
    ]
    other_net = PolicyFields.model_validate(
        {"id": "o", "network": "red", "rules": [rule(1, "in", "block")]}
    )
    assert side([other_net], WEB, "in", TCP80, DB).verdict == "default-allow"


def test_a_flow_needs_both_sides() -> None:
    """Out at the source, in at the destination, each with its own policies."""
    egress = pol("eg", rule(1, "out", "allow", remote_selector=["app=db"]), selector=["app=web"])
    ingress = pol(
        "in", rule(1, "in", "allow", protocol="tcp", local_ports=["5432"]), selector=["app=db"]
    )
    flow = Flow("tcp", 5432, 40000)
    out, into = trace([egress, ingress], (NET, WEB), MEMBERS, (NET, DB), MEMBERS, flow)
    assert (out.verdict, out.policy, into.verdict, into.policy) == ("allow", "eg", "allow", "in")
    out, into = trace([egress, ingress], (NET, WEB), MEMBERS, (NET, DB), MEMBERS, Flow("tcp", 22))
    assert out.admitted and not into.admitted
    out, into = trace([egress, ingress], (NET, WEB), MEMBERS, (NET, CLI), MEMBERS, flow)
    assert not out.admitted and into.verdict == "default-allow"
