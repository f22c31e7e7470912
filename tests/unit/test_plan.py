"""The planner with plain values, and the applier against the in-memory kernel."""

from __future__ import annotations

import dataclasses

import proto
from agents import plan as p
from agents.agent import Agent
from agents.desired import Overlay, desired_state
from agents.kernel.memory import MemoryKernel
from agents.model import FLOOD_MAC, Fdb, HostState, Neigh
from proto import names
from tests import samples

H = "h1"
VTEP = "198.18.0.1"


def table(*recs: proto.EndpointRecord) -> dict[str, Overlay]:
    """The remote entries of network blue holding ``recs``."""
    return {"blue": Overlay.of(H, "blue", VTEP, {r.id: r for r in recs})}


REMOTE = proto.EndpointRecord(
    id="ep-9", host="h2", mac="02:00:00:00:00:09", ip="10.1.0.9", vtep="198.18.0.2", gen=2
)
LOCAL = samples.RECORD  # ep-1 on h1


def full() -> HostState:
    return desired_state(H, samples.DESIRED, table(LOCAL, REMOTE), VTEP)


async def converge(desired: HostState, kernel: MemoryKernel, complete: bool = True) -> int:
    actions = p.plan(desired, await kernel.read(), complete=complete)
    for a in actions:
        await kernel.apply(a)
    return len(actions)


def test_desired_state_of_an_overlay_host() -> None:
    st = full()
    br, vx = names.bridge("blue"), names.vxlan("blue")
    assert st.bridges[br].address is None  # the gateway is the router's
    assert st.vxlans[vx].vni == 4096 and st.vxlans[vx].local == VTEP
    veth = st.veths[names.veth(LOCAL.id)]
    assert (veth.inner, veth.address, veth.netns) == ("eth0", "10.1.0.2/24", "plexus:h1:c1")
    # the overlay's router: its gateway leg on the bridge, no way out (no outbound NAT)
    gw = st.veths[names.gateway_leg("blue")]
    assert (gw.bridge, gw.netns, gw.inner, gw.address) == (
        br,
        "plexus:h1:@blue",
        "gw",
        "10.1.0.1/24",
    )
    assert gw.mac != names.leg_mac("h2", "blue", "gw")  # one per host: the L2 spans hosts
    assert len(st.veths) == 2 and st.namespaces == {"plexus:h1:c1", "plexus:h1:@blue"}
    assert st.routes == {"plexus:h1:c1": "10.1.0.1", "plexus:h1:@blue": None}
    assert st.ns_rules == {"plexus:h1:@blue": None} and st.host_routes == {}
    # remote endpoints only: a static entry, a neighbour and one flood entry per VTEP
    assert st.fdb == {Fdb(vx, REMOTE.mac, "198.18.0.2"), Fdb(vx, FLOOD_MAC, "198.18.0.2")}
    assert st.neigh == {(vx, REMOTE.ip): Neigh(vx, REMOTE.ip, REMOTE.mac)}
    assert all(len(n) <= 15 for n in [*st.bridges, *st.vxlans, *st.veths])


async def test_empty_to_full_then_zero_actions() -> None:
    kernel = MemoryKernel()
    n = await converge(full(), kernel)
    kinds = [type(a).__name__ for a in kernel.applied]
    assert n == 13
    assert kinds[:5] == ["AddNamespace", "AddNamespace", "AddBridge", "AddVxlan", "AddVeth"]
    # last, the addresses made reachable are announced on the bridge: the local
    # endpoint's, the router's gateway, the remote endpoint's
    assert kinds[-3:] == ["Announce"] * 3
    assert p.plan(full(), await kernel.read(), complete=True) == []


async def test_full_to_empty_only_when_complete() -> None:
    kernel = MemoryKernel()
    await converge(full(), kernel)
    empty = HostState()
    assert p.plan(empty, await kernel.read(), complete=False) == []
    await converge(empty, kernel, complete=True)
    assert kernel.state.count() == 0


async def test_adoption_of_a_correct_host_is_zero_actions() -> None:
    programmed = MemoryKernel()
    await converge(full(), programmed)
    restarted = MemoryKernel(await programmed.read())
    assert await converge(full(), restarted, complete=False) == 0
    assert await converge(full(), restarted, complete=True) == 0


async def test_single_changes() -> None:
    kernel = MemoryKernel()
    await converge(full(), kernel)
    vx = names.vxlan("blue")
    moved = REMOTE.model_copy(update={"vtep": "198.18.0.3", "gen": 3})
    want = desired_state(H, samples.DESIRED, table(LOCAL, moved), VTEP)
    actions = p.plan(want, await kernel.read(), complete=True)
    assert set(actions) == {
        p.DelFdb(Fdb(vx, REMOTE.mac, "198.18.0.2")),
        p.AddFdb(Fdb(vx, REMOTE.mac, "198.18.0.3")),
        p.DelFdb(Fdb(vx, FLOOD_MAC, "198.18.0.2")),
        p.AddFdb(Fdb(vx, FLOOD_MAC, "198.18.0.3")),
    }
    # a new MAC for the same remote IP replaces the neighbour
    remac = REMOTE.model_copy(update={"mac": "02:00:00:00:00:aa"})
    want = desired_state(H, samples.DESIRED, table(LOCAL, remac), VTEP)
    actions = p.plan(want, await kernel.read(), complete=True)
    assert p.DelNeigh(Neigh(vx, REMOTE.ip, REMOTE.mac)) in actions
    assert p.AddNeigh(Neigh(vx, REMOTE.ip, "02:00:00:00:00:aa")) in actions
    # a drifted veth (down by hand) is re-created, and the default route with it
    st = kernel.state
    name = names.veth(LOCAL.id)
    st.veths[name] = dataclasses.replace(st.veths[name], up=False)
    actions = p.plan(full(), await kernel.read(), complete=False)
    assert [type(a) for a in actions] == [p.DelVeth, p.AddVeth, p.SetRoute, p.Announce]


async def test_stale_removal_waits_for_the_complete_table() -> None:
    kernel = MemoryKernel()
    await converge(full(), kernel)
    without = desired_state(H, samples.DESIRED, table(LOCAL), VTEP)
    assert p.plan(without, await kernel.read(), complete=False) == []
    dels = p.plan(without, await kernel.read(), complete=True)
    assert {type(a) for a in dels} == {p.DelFdb, p.DelNeigh}


async def test_failed_action_does_not_stop_the_others() -> None:
    kernel = MemoryKernel()
    kernel.fail = {p.AddNeigh}
    agent = Agent(H, kernel, VTEP)
    agent.on_message("plexus/v1/hosts/h1/desired", proto.encode(samples.DESIRED))
    snap = proto.NetworkSnapshot(network="blue", generation=2, records=(LOCAL, REMOTE))
    agent.on_message("plexus/v1/networks/blue/snapshot/0", proto.encode(snap))
    result = await agent.reconcile()
    assert len(result.errors) == 1 and "AddNeigh" in result.errors[0]
    assert kernel.state.veths and kernel.state.fdb
    assert agent.status().desired_generation == 0  # not reported as applied
    kernel.fail = set()
    result = await agent.reconcile()
    assert result.errors == [] and result.actions == 2  # the neighbour, its announcement
    st = agent.status()
    assert (st.desired_generation, st.networks) == (5, {"blue": 2})


def test_agent_rejects_what_is_not_its_own() -> None:
    agent = Agent(H, MemoryKernel(), VTEP)
    doc = proto.encode(samples.DESIRED)
    assert agent.on_message("plexus/v1/hosts/h2/desired", doc) == "other_host"
    other = samples.DESIRED.model_copy(update={"host": "h2"})
    assert agent.on_message("plexus/v1/hosts/h1/desired", proto.encode(other)) == "other_host"
    assert agent.on_message("plexus/v1/hosts/h1/desired", b"\x93junk") == "malformed"
    assert agent.on_message("plexus/v1/hosts/h1/desired", b"x" * (2 << 20)) == "oversize"
    assert (
        agent.on_message("plexus/v1/hosts/h1/desired", proto.encode(samples.NETWORK))
        == "wrong_kind"
    )
    assert (
        agent.on_message("plexus/v1/networks/blue/changes", proto.encode(samples.CHANGE))
        == "not_member"
    )
    index = "plexus/v1/networks/blue/snapshot/index"
    assert agent.on_message(index, proto.encode(samples.INDEX)) == "not_member"
    assert agent.on_message("nope/x", doc) == "bad_topic"
    assert agent.on_message("plexus/v1/hosts/h1/desired", doc) is None
    assert agent.on_message("plexus/v1/hosts/h1/desired", doc) == "stale"
    # a network it follows now: an index must name it, and be one
    other_net = samples.INDEX.model_copy(update={"network": "red"})
    assert agent.on_message(index, proto.encode(other_net)) == "topic_mismatch"
    assert agent.on_message(index, proto.encode(samples.SNAPSHOT)) == "wrong_kind"
    assert agent.on_message(index, proto.encode(samples.INDEX)) is None
    assert agent.doc == samples.DESIRED
    counted = agent.metrics.registry.get_sample_value(
        "plexus_agent_rejected_messages_total", {"reason": "other_host"}
    )
    assert counted == 2


def test_tables_ignore_old_duplicate_and_out_of_order() -> None:
    from agents.tables import Table
    from proto import rows

    t = Table("blue")
    rec = lambda i, g: proto.EndpointRecord(  # noqa: E731
        id=f"e{i}", host="h2", mac=f"02:00:00:00:00:{i:02x}", ip=f"10.1.0.{i}", gen=g
    )
    ch = lambda g, *r, deletes=(): rows.of(  # noqa: E731
        proto.NetworkChange(network="blue", generation=g, upserts=r, deletes=deletes)
    )
    assert t.on_change(ch(6, rec(6, 6))) == "buffered"  # before any snapshot
    assert (
        t.on_snapshot(
            rows.of(
                proto.NetworkSnapshot(
                    network="blue", generation=5, shard=0, shards=2, records=(rec(1, 3),)
                )
            )
        )
        == "partial"
    )
    assert not t.complete
    assert (
        t.on_snapshot(
            rows.of(
                proto.NetworkSnapshot(
                    network="blue", generation=5, shard=1, shards=2, records=(rec(2, 5),)
                )
            )
        )
        == "applied"
    )
    assert t.complete and t.generation == 6 and sorted(t.records) == ["e1", "e2", "e6"]
    assert t.on_change(ch(6, rec(6, 6))) == "duplicate"
    assert t.on_change(ch(8, deletes=("e1",))) == "buffered"  # gap: waits
    assert t.generation == 6
    assert t.on_change(ch(7, rec(7, 7))) == "applied"
    assert t.generation == 8 and "e1" not in t.records and "e7" in t.records
    assert t.on_snapshot(rows.of(proto.NetworkSnapshot(network="blue", generation=4))) == "stale"
    assert t.generation == 8


async def test_overlay_routers_with_outbound_nat_and_overlapping_subnets() -> None:
    """Two overlays on one subnet, with outbound NAT, on one host: each gets a router
    namespace with its own gateway, way out, transit address and masquerade; the
    host routes an overlay's subnet to its router only for NAT exceptions. Converges,
    then adopts with zero actions; a router gone by hand comes back whole."""
    blue = samples.NETWORK.model_copy(update={"outbound_nat": True})
    red = blue.model_copy(update={"id": "red", "vni": 4097, "nat_exceptions": ("192.0.2.0/24",)})
    doc = samples.DESIRED.model_copy(update={"networks": (blue, red)})
    want = desired_state(H, doc, {}, VTEP)
    rb, rr = names.router_netns(H, "blue"), names.router_netns(H, "red")
    ups = {st.netns: st for st in want.veths.values() if st.inner == "up"}
    assert ups[rb].address == "169.254.17.33/17" and ups[rr].address == "169.254.17.34/17"
    assert want.bridges[names.TRANSIT_BRIDGE].address == "169.254.0.1/17"
    assert want.routes[rb] == want.routes[rr] == "169.254.0.1"
    assert want.host_routes == {"10.1.0.0/24": "169.254.17.34"}
    assert {ns for ns, r in want.ns_rules.items() if r} == {rb, rr}
    kernel = MemoryKernel()
    await converge(want, kernel)
    assert p.plan(want, await kernel.read(), complete=True) == []
    restarted = MemoryKernel(await kernel.read())
    assert await converge(want, restarted, complete=True) == 0
    actions = p.plan(want, HostState(), complete=True)
    assert p.SetRules(want.ns_rules[rr] or frozenset(), rr) in actions
    assert p.SetHostRoute("10.1.0.0/24", "169.254.17.34") in actions
    # the router namespace deleted by hand: namespace, legs, route and table return
    await kernel.apply(p.DelNamespace(rr))
    again = {type(a).__name__ for a in p.plan(want, await kernel.read(), complete=True)}
    assert again == {"AddNamespace", "AddVeth", "SetRoute", "SetRules", "Announce"}
    # without the exceptions the host route goes, once the table is complete
    plain = doc.model_copy(
        update={"networks": (blue, red.model_copy(update={"nat_exceptions": ()}))}
    )
    want2 = desired_state(H, plain, {}, VTEP)
    await converge(want, kernel)
    assert p.DelHostRoute("10.1.0.0/24") in p.plan(want2, await kernel.read(), complete=True)
    assert p.DelHostRoute("10.1.0.0/24") not in p.plan(want2, await kernel.read(), complete=False)
