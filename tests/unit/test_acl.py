"""agents.acl: policies as chains, sets and map elements (pure; the real kernel in
tests/kernel/test_acl.py)."""

from __future__ import annotations

import json
from typing import Any

import proto
from agents import plan as p
from agents.acl import IN_MAP, OUT_MAP, compile_acl
from agents.desired import desired_state
from agents.kernel.memory import MemoryKernel
from proto import names
from proto.policy import Policy

NET = proto.NetworkSpec(id="n", mode="nat", subnet="10.44.0.0/24", gateway="10.44.0.1")


def rule(**kw: Any) -> dict[str, Any]:
    return {"priority": 10, "direction": "in", "action": "allow", **kw}


def policy(*rules: dict[str, Any], **kw: Any) -> Policy:
    return Policy(id=kw.pop("id", "p"), network="n", rules=tuple(rules), **kw)


def doc(*policies: Policy, labels: dict[str, tuple[str, ...]] | None = None) -> proto.HostDesired:
    labels = labels or {}
    comps = tuple(
        proto.Compartment(
            id=name,
            endpoints=(
                proto.LocalEndpoint(
                    id=name,
                    network="n",
                    index=0,
                    mac=f"02:00:00:00:44:{i + 1:02x}",
                    ip=f"10.44.0.{i + 10}",
                    prefixlen=24,
                    labels=labels.get(name, ()),
                ),
            ),
        )
        for i, name in enumerate(["web", "web2", "client"])
    )
    return proto.HostDesired(
        host="h", generation=1, networks=(NET,), compartments=comps, policies=policies
    )


def chains(acl: Any) -> dict[str, list[tuple[str, list[Any]]]]:
    out: dict[str, list[tuple[str, list[Any]]]] = {}
    for r in sorted(acl.rules, key=lambda r: (r.chain, r.comment)):
        out.setdefault(r.chain, []).append((r.comment.split(" ")[1], json.loads(r.expr)))
    return out


def test_no_policy_no_acl() -> None:
    assert compile_acl(doc(), {}) is None
    st = desired_state("h", doc(), {}, None)
    assert st.elements == {} and not st.bridges[names.bridge("n")].filtered


def test_endpoints_the_same_policies_select_share_their_chains() -> None:
    web = policy(rule(protocol="tcp", local_ports=("80", "8000-8080")), selector=("app=web",))
    acl = compile_acl(doc(web, labels={"web": ("app=web",), "web2": ("app=web",)}), {})
    assert acl is not None
    br = names.bridge("n")
    ins = acl.elements[IN_MAP]
    assert {(b, ip) for b, ip, _ in ins} == {(br, "10.44.0.10"), (br, "10.44.0.11")}
    assert len({c for _, _, c in ins}) == 1  # one endpoint chain for both
    assert acl.elements[OUT_MAP] == frozenset()  # no out rule: open that way
    assert acl.filtered == {"n"}
    (chain,) = {c for _, _, c in ins}
    body = chains(acl)[chain]
    assert [label for label, _ in body] == [
        "acl:established",
        "acl:invalid",
        "acl:tier100",
        "acl:passed",
    ]
    group = body[2][1][0]["jump"]["target"]
    labels = [label for label, _ in chains(acl)[group]]
    assert labels == ["acl:p:in-10", "acl:tier100:end"]
    expr = chains(acl)[group][0][1]
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                      "right": {"set": [80, {"range": [8000, 8080]}]}}} in expr  # fmt: skip
    assert expr[-1] == {"accept": None}


def test_priority_order_ties_and_verdicts() -> None:
    a = policy(
        rule(priority=5, action="pass"),
        rule(priority=20, action="allow", protocol="udp"),
        rule(priority=20, direction="out", action="block"),
        id="a",
    )
    b = policy(rule(priority=20, action="block", protocol="tcp"), id="b")
    c = policy(rule(priority=1, action="allow"), id="c", tier=200)
    acl = compile_acl(doc(a, b, c), {})
    assert acl is not None
    (ein,) = {ch for _, ip, ch in acl.elements[IN_MAP] if ip == "10.44.0.10"}
    body = chains(acl)[ein]
    assert [label for label, _ in body][2:] == ["acl:tier100", "acl:tier200", "acl:passed"]
    tier100 = chains(acl)[body[2][1][0]["jump"]["target"]]
    # highest priority first; at one priority block before allow; pass returns
    assert [label for label, _ in tier100] == [
        "acl:b:in-20",
        "acl:a:in-20",
        "acl:a:in-5",
        "acl:tier100:end",
    ]
    assert [e[-1] for _, e in tier100] == [
        {"drop": None},
        {"accept": None},
        {"return": None},
        {"drop": None},
    ]


def test_selectors_are_sets_of_the_networks_addresses_and_prefixes_stay_inline() -> None:
    pol = policy(
        rule(remote_selector=("role=client",), remote_addresses=("192.168.0.0/16",)),
        selector=("app=web",),
    )
    acl = compile_acl(doc(pol, labels={"web": ("app=web",), "client": ("role=client",)}), {})
    assert acl is not None
    (name,) = [n for n in acl.elements if n.startswith("s")]
    assert acl.elements[name] == frozenset({"10.44.0.12"})
    group = next(c for c in chains(acl) if c.startswith("g"))
    rights = [e[0]["match"]["right"] for _, e in chains(acl)[group][:2]]
    assert "@" + name in rights
    assert {"set": [{"prefix": {"addr": "192.168.0.0", "len": 16}}]} in rights


async def test_a_membership_change_is_set_elements_only() -> None:
    pol = policy(rule(remote_selector=("role=client",)), selector=("app=web",))
    before = doc(pol, labels={"web": ("app=web",), "client": ("role=client",)})
    after = doc(pol, labels={"web": ("app=web",), "client": ("role=client",),
                             "web2": ("role=client",)})  # fmt: skip
    k = MemoryKernel()
    await k.apply_many(p.plan(desired_state("h", before, {}, None), await k.read(), complete=True))
    acts = p.plan(desired_state("h", after, {}, None), await k.read(), complete=True)
    assert [type(a) for a in acts] == [p.SetElements]
    (change,) = acts[0].changes  # type: ignore[union-attr]
    assert change[1] == frozenset({"10.44.0.11"}) and change[2] == frozenset()
    await k.apply_many(acts)
    assert p.plan(desired_state("h", after, {}, None), await k.read(), complete=True) == []
    # a new selected endpoint: a map element, not a new table
    more = doc(pol, labels={"web": ("app=web",), "client": ("role=client",),
                            "web2": ("app=web",)})  # fmt: skip
    acts = p.plan(desired_state("h", more, {}, None), await k.read(), complete=True)
    assert {type(a) for a in acts} == {p.SetElements}
