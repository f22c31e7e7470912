"""Announcements (issue 18, "the first packet"): a pass that makes an address reachable
on a bridge (a new veth, a new or changed remote neighbour) ends by announcing it there,
so that a peer that asked for it before it existed need not wait for its ARP retry.
The planner with plain values, an agent on the in-memory kernel, and the frame's bytes."""

from __future__ import annotations

import dataclasses
import socket
import struct

import proto
from agents import plan as p
from agents.agent import Agent
from agents.desired import Overlay, desired_state
from agents.kernel.announce import frame
from agents.kernel.memory import MemoryKernel
from agents.model import HANDOVER, HostState
from proto import names, topics
from tests import samples

H, VTEP = "h1", "198.18.0.1"
BR = names.bridge("blue")
LOCAL = samples.RECORD  # ep-1 on h1: 10.1.0.2
GW_MAC = names.leg_mac(H, "blue", "gw")


def remote(i: int, host: str = "h2", **kw: object) -> proto.EndpointRecord:
    fields = {"mac": f"02:00:00:00:01:{i:02x}", "ip": f"10.1.0.{i + 10}", "gen": 2, **kw}
    return proto.EndpointRecord(id=f"r{i}", host=host, vtep=f"198.18.0.{int(host[1:])}", **fields)


def want(*recs: proto.EndpointRecord, doc: proto.HostDesired = samples.DESIRED) -> HostState:
    ov = Overlay.of(H, "blue", VTEP, {r.id: r for r in (LOCAL, *recs)})
    return desired_state(H, doc, {"blue": ov}, VTEP)


def announced(actions: list[p.Action]) -> list[p.Announce]:
    return [a for a in actions if isinstance(a, p.Announce)]


async def programmed(state: HostState) -> MemoryKernel:
    kernel = MemoryKernel()
    await kernel.apply_many(p.plan(state, HostState(), complete=True))
    return kernel


def test_a_new_host_announces_its_remote_endpoints_and_veths_last() -> None:
    actions = p.plan(want(remote(1)), HostState(), complete=True)
    *_, far, gw, local = actions
    assert far == p.Announce(BR, "10.1.0.11", "02:00:00:00:01:01")  # on the VXLAN's bridge
    # the veths' (in the order they were made): the router's gateway leg, the endpoint
    assert {gw, local} == {p.Announce(BR, "10.1.0.1", GW_MAC), p.Announce(BR, LOCAL.ip, LOCAL.mac)}
    assert len(announced(actions)) == 3


async def test_only_what_a_pass_makes_reachable_is_announced() -> None:
    kernel = await programmed(want(remote(1)))
    st = await kernel.read()
    assert p.plan(want(remote(1)), st, complete=True) == []  # adopted: nothing announced
    # a remote endpoint added: its entries, then its announcement
    actions = p.plan(want(remote(1), remote(2)), st, complete=True)
    assert announced(actions) == [p.Announce(BR, "10.1.0.12", "02:00:00:00:01:02")]
    assert isinstance(actions[-1], p.Announce)
    # its address reused by an endpoint of another MAC: announced, so that a peer that
    # holds the old MAC takes the new one
    reused = remote(3, ip="10.1.0.11")
    assert announced(p.plan(want(reused), st, complete=True)) == [
        p.Announce(BR, "10.1.0.11", "02:00:00:00:01:03")
    ]
    # moved to another host (another VTEP), same MAC: peers' entries stay right
    moved = remote(1, host="h3")
    assert announced(p.plan(want(moved), st, complete=True)) == []
    # deleted: nothing to announce
    assert announced(p.plan(want(), st, complete=True)) == []


async def test_a_recreated_veth_is_announced_again() -> None:
    kernel = await programmed(want())
    st = kernel.state
    name = names.veth(LOCAL.id)
    st.veths[name] = dataclasses.replace(st.veths[name], up=False)  # drifted
    assert announced(p.plan(want(), st, complete=False)) == [p.Announce(BR, LOCAL.ip, LOCAL.mac)]


def test_a_handed_over_pair_is_not_announced() -> None:
    """Its address is set by the runtime that takes its inner end, later."""
    comp = samples.DESIRED.compartments[0].model_copy(update={"handover": True})
    doc = samples.DESIRED.model_copy(update={"compartments": (comp,)})
    st = desired_state(H, doc, {}, VTEP)
    assert st.veths[names.veth(LOCAL.id)].netns == HANDOVER
    assert announced(p.plan(st, HostState(), complete=True)) == [p.Announce(BR, "10.1.0.1", GW_MAC)]


def test_every_mode_announces_on_the_endpoints_bridge() -> None:
    """nat, internal, transparent: the local endpoint, on its own network's bridge."""
    for mode, extra in (
        ("nat", {"gateway": "10.5.0.1"}),
        ("internal", {}),
        ("transparent", {"uplink": "eth9"}),
    ):
        net = proto.NetworkSpec(id=mode, mode=mode, subnet="10.5.0.0/24", mtu=1500, **extra)
        ep = (
            samples.DESIRED.compartments[0]
            .endpoints[0]
            .model_copy(update={"network": mode, "ip": "10.5.0.7"})
        )
        comp = samples.DESIRED.compartments[0].model_copy(update={"endpoints": (ep,)})
        doc = samples.DESIRED.model_copy(update={"networks": (net,), "compartments": (comp,)})
        st = desired_state(H, doc, {}, VTEP, allowed_uplinks={"eth9"})
        actions = p.plan(st, HostState(), complete=True)
        assert announced(actions) == [p.Announce(names.bridge(mode), "10.5.0.7", ep.mac)], mode
        assert actions[-1] == announced(actions)[0]


def test_a_bulk_pass_announces_at_most_the_limit() -> None:
    """A cold start or a resynchronisation adds thousands: the first ANNOUNCE_LIMIT
    are announced (remote ones first: a local endpoint also announces itself), the ARP
    retry resolves the rest for their peers."""
    many = [remote(i) for i in range(200)]
    got = announced(p.plan(want(*many), HostState(), complete=True))
    assert len(got) == p.ANNOUNCE_LIMIT
    assert {a.ip for a in got} < {r.ip for r in many}
    few = many[: p.ANNOUNCE_LIMIT - 1]
    got = announced(p.plan(want(*few), HostState(), complete=True))
    assert len(got) == p.ANNOUNCE_LIMIT
    ips = {a.ip for a in got}
    assert ips > {r.ip for r in few} and len(ips & {"10.1.0.1", LOCAL.ip}) == 1  # a veth


async def test_an_agent_announces_a_remote_endpoint_after_programming_it() -> None:
    """An incremental pass (on the driver's view, diffing only what changed) programs the
    new remote endpoint's FDB entry and neighbour, and announces it after them."""
    kernel = MemoryKernel()
    agent = Agent(H, kernel, VTEP)
    agent.on_message(topics.host_desired(H), proto.encode(samples.DESIRED))
    snap = proto.NetworkSnapshot(network="blue", generation=2, records=(LOCAL,))
    agent.on_message(topics.network_snapshot("blue", 0), proto.encode(snap))
    assert (await agent.reconcile()).errors == []
    kernel.applied.clear()
    new = remote(5, gen=3)
    change = proto.NetworkChange(network="blue", generation=3, upserts=(new,))
    agent.on_message(topics.network_changes("blue"), proto.encode(change))
    result = await agent.reconcile(full=False)
    assert result.errors == []
    *entries, last = kernel.applied
    # its FDB entry, h2's flood entry (a new VTEP), its neighbour; then the announcement
    assert sorted(type(a).__name__ for a in entries) == ["AddFdb", "AddFdb", "AddNeigh"]
    assert last == p.Announce(BR, new.ip, new.mac)
    # the announcement changed no state: the next pass plans nothing
    assert (await agent.reconcile(full=True)).actions == 0


def test_the_frame_is_a_gratuitous_arp_reply_broadcast_from_the_endpoint() -> None:
    f = frame("10.1.0.11", "02:00:00:00:01:01")
    mac = bytes.fromhex("020000000101")
    ip = socket.inet_aton("10.1.0.11")
    assert len(f) == 42
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    hrd, pro, hln, pln, op = struct.unpack("!HHBBH", f[14:22])
    assert (hrd, pro, hln, pln, op) == (1, 0x0800, 6, 4, 2)  # Ethernet, IPv4, a reply
    # sender and target are both the endpoint: what Linux takes as gratuitous
    assert f[22:28] == mac and f[28:32] == ip and f[32:38] == mac and f[38:42] == ip
