"""What each network mode asks of a host's nftables table and sysctls (pure), how the
planner keeps the table, and the table document the Linux driver feeds to nft."""

from __future__ import annotations

import json

from prometheus_client import generate_latest

import proto
from agents import plan as p
from agents.desired import desired_state
from agents.kernel.memory import MemoryKernel
from agents.kernel.nft import document
from agents.metrics import AgentMetrics
from agents.model import HostState
from agents.rules import CHAINS, FORWARDING, host_rules, masquerade, router_masquerade
from proto import names

NAT = proto.NetworkSpec(id="web", mode="nat", subnet="10.5.0.0/24", gateway="10.5.0.1", mtu=1500)
OVERLAY = proto.NetworkSpec(
    id="ov", mode="overlay", subnet="10.6.0.0/24", gateway="10.6.0.1", vni=7
)
INTERNAL = proto.NetworkSpec(id="iso", mode="internal", subnet="10.8.0.0/24", mtu=1500)
PHYS = proto.NetworkSpec(
    id="phys", mode="transparent", subnet="198.18.9.0/24", uplink="eth0", uplinks={"h2": "eth1"}
)


def doc(*nets: proto.NetworkSpec, ports: tuple[proto.PortMapping, ...] = ()) -> proto.HostDesired:
    eps = tuple(
        proto.LocalEndpoint(
            id=f"e-{n.id}",
            network=n.id,
            index=i,
            mac=f"02:00:00:00:00:0{i + 1}",
            ip=n.subnet.replace(".0/24", ".9"),
            prefixlen=24,
            ports=ports if n.mode == "nat" else (),
        )
        for i, n in enumerate(nets)
    )
    return proto.HostDesired(
        host="h1",
        generation=1,
        networks=nets,
        compartments=(proto.Compartment(id="c", endpoints=eps),),
    )


def labels(rules: frozenset[p.Rule] | None) -> list[str]:
    return sorted(f"{r.chain} {r.comment.rsplit(' #', 1)[0]}" for r in rules or ())


def test_plain_overlay_needs_no_table_and_no_forwarding() -> None:
    assert host_rules(doc(OVERLAY)) == (None, {})


def test_nat_masquerades_its_subnet_and_turns_forwarding_on() -> None:
    web = proto.PortMapping(host_port=8080, port=80)
    dns = proto.PortMapping(protocol="udp", host_port=53, port=5353, host_ip="198.18.0.1")
    rules, sysctls = host_rules(doc(NAT, ports=(web, dns)))
    assert sysctls == FORWARDING == {"net.ipv4.ip_forward": "1"}
    assert labels(rules) == [
        "output port:e-web:198.18.0.1:53:5353/udp",
        "output port:e-web:8080:80/tcp",
        "postrouting nat:web:hairpin",
        "postrouting nat:web:masquerade",
        "prerouting port:e-web:198.18.0.1:53:5353/udp",
        "prerouting port:e-web:8080:80/tcp",
    ]
    by = {r.comment.rsplit(" #", 1)[0] + r.chain: json.loads(r.expr) for r in rules or ()}
    masq = by["nat:web:masqueradepostrouting"]
    assert {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}},
                      "right": names.bridge("web")}} in masq  # fmt: skip
    dnat = by["port:e-web:8080:80/tcpprerouting"]
    assert dnat[-1] == {"dnat": {"family": "ip", "addr": "10.5.0.9", "port": 80}}
    out = by["port:e-web:198.18.0.1:53:5353/udpoutput"]
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": "198.18.0.1"}} in out  # fmt: skip


def test_overlay_outbound_nat_masquerades_in_its_router_then_on_the_host() -> None:
    """The router translates all but the exceptions to its transit address (its own
    subnet never leaves through ``up``); the host translates the routers' transit
    addresses, once for every overlay: exception traffic keeps its source."""
    ov = OVERLAY.model_copy(update={"outbound_nat": True, "nat_exceptions": ("192.0.2.0/24",)})
    ov2 = ov.model_copy(update={"id": "ov2", "vni": 7, "nat_exceptions": ()})
    rules, sysctls = host_rules(doc(ov, ov2))
    assert labels(rules) == ["postrouting overlay:transit:masquerade"] and sysctls == FORWARDING
    (host,) = rules or ()
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                      "right": {"prefix": {"addr": "169.254.0.0", "len": 17}}}} in json.loads(
        host.expr)  # fmt: skip
    router = json.loads(router_masquerade(ov).expr)
    assert {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "up"}} in router
    assert {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                      "right": {"prefix": {"addr": "192.0.2.0", "len": 24}}}} in router  # fmt: skip
    assert router[-1] == {"masquerade": None}
    assert not any("daddr" in json.dumps(m) for m in json.loads(router_masquerade(ov2).expr))


def test_internal_drops_what_is_routed_in_or_out_but_not_within() -> None:
    rules, sysctls = host_rules(doc(INTERNAL))
    assert labels(rules) == ["forward internal:iso:in", "forward internal:iso:out"]
    assert sysctls == {}
    for r in rules or ():
        expr = json.loads(r.expr)
        ops = sorted(m["match"]["op"] for m in expr if "match" in m)
        assert ops == ["!=", "=="] and expr[-1] == {"drop": None}


def test_rule_identity_follows_its_content() -> None:
    a, b = masquerade(NAT), masquerade(NAT)
    assert a == b and a.comment == b.comment
    other = masquerade(NAT.model_copy(update={"subnet": "10.50.0.0/24"}))
    assert other.comment.split(" #")[0] == a.comment.split(" #")[0] and other != a


def test_transparent_bridge_takes_the_hosts_uplink_when_allowed() -> None:
    st = desired_state("h1", doc(PHYS), {}, None, {"eth0", "eth1"})
    (br,) = st.bridges.values()
    assert (br.uplink, br.address, st.refused) == ("eth0", None, [])
    st2 = desired_state("h2", doc(PHYS).model_copy(update={"host": "h2"}), {}, None, {"eth1"})
    assert next(iter(st2.bridges.values())).uplink == "eth1"


def test_an_uplink_the_host_does_not_allow_is_refused() -> None:
    """A link the agent does not own is never enslaved on the controller's word alone."""
    st = desired_state("h1", doc(PHYS), {}, None, {"eth1"})
    (br,) = st.bridges.values()
    assert br.uplink is None
    assert st.refused == ["network phys: uplink 'eth0' is not in this host's allowed_uplinks"]
    assert desired_state("h1", doc(PHYS), {}, None).refused == st.refused


def test_planner_replaces_the_table_when_it_differs_and_removes_it_only_when_complete() -> None:
    want = desired_state("h1", doc(NAT), {}, None)
    actions = p.plan(want, HostState(), complete=False)
    # the table last, but for the announcements of the new endpoints (once it lets
    # their traffic through)
    *actions, announce = actions
    assert isinstance(actions[0], p.SetSysctl) and isinstance(actions[-1], p.SetRules)
    assert announce == p.Announce(names.bridge("web"), "10.5.0.9", "02:00:00:00:00:01")
    have = HostState(rules=want.rules, sysctls=dict(want.sysctls))
    assert not [a for a in p.plan(want, have, complete=True) if isinstance(a, p.SetRules)]
    # a rule missing (deleted by hand) or the table gone (flushed): replaced
    assert want.rules is not None
    partial = HostState(rules=frozenset(list(want.rules)[1:]), sysctls=dict(want.sysctls))
    assert p.SetRules(want.rules) in p.plan(want, partial, complete=False)
    # no table wanted: removed, but only with the complete desired state
    none = HostState()
    assert p.plan(none, have, complete=False) == []
    assert p.plan(none, have, complete=True) == [p.DelRules()]
    # a sysctl is set when it differs, never reset
    assert p.plan(none, HostState(sysctls={"net.ipv4.ip_forward": "1"}), complete=True) == []


async def test_memory_kernel_converges_every_mode_then_plans_nothing() -> None:
    kernel = MemoryKernel()
    ov = OVERLAY.model_copy(update={"outbound_nat": True})
    want = desired_state("h1", doc(NAT, ov, INTERNAL, PHYS), {}, "198.18.0.1")
    for a in p.plan(want, await kernel.read(), complete=True):
        await kernel.apply(a)
    assert p.plan(want, await kernel.read(), complete=True) == []
    assert kernel.state.rules == want.rules and kernel.state.sysctls == FORWARDING


def test_the_nft_document_replaces_only_plexus_table_in_one_transaction() -> None:
    rules, _ = host_rules(doc(NAT, INTERNAL))
    cmds = document(rules or ())["nftables"]
    table = {"family": "inet", "name": "plexus"}
    assert cmds[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                        {"add": {"table": table}}]  # fmt: skip
    chains = [c["add"]["chain"] for c in cmds if "chain" in c.get("add", {})]
    assert [(c["name"], c["hook"], c["prio"]) for c in chains] == [
        (c.name, c.hook, c.prio) for c in CHAINS
    ]
    added = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    assert len(added) == len(rules or ()) and all(r["table"] == "plexus" for r in added)
    named = {c[op][kind].get("table", c[op][kind].get("name"))
             for c in cmds for op in c for kind in c[op]}  # fmt: skip
    assert named == {"plexus"}  # no other table is ever named


def test_rule_counters_become_metrics_and_go_with_their_rules() -> None:
    m = AgentMetrics()
    m.rule_counters({"nat:web:masquerade #1": (3, 180), "port:e:80 #2": (1, 60)})
    text = generate_latest(m.registry).decode()
    assert 'plexus_agent_nft_rule_packets{rule="nat:web:masquerade #1"} 3.0' in text
    m.rule_counters({"port:e:80 #2": (2, 120)})
    text = generate_latest(m.registry).decode()
    assert "masquerade" not in text
    assert 'plexus_agent_nft_rule_bytes{rule="port:e:80 #2"} 120.0' in text
