"""The controller's domain logic with a real SQLite store and no broker: each command,
what its commit publishes (:mod:`controller.publication`) and which host must report what
(:mod:`controller.convergence`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import proto
from controller import convergence
from controller.errors import Conflict, Invalid, NotFound
from controller.publication import Publication
from controller.publish import Publish
from controller.service import Controller as Commands
from controller.store import SqliteStore
from proto import transit
from proto.rest import CompartmentCreate, EndpointCreate, NetworkCreate, PublishedPort


@dataclass
class Done:
    """A command's outcome as the runtime sees it."""

    value: Any
    publish: list[Publish]
    dirty: set[str] = field(default_factory=set)
    target: convergence.Target = field(default_factory=dict)


class Controller:
    """The service and its publication, as the runtime wires them (minus the bus): every
    command's change goes through :meth:`Publication.of`, in order."""

    COMMANDS = frozenset(
        {
            "host_reported",
            "decommission_host",
            "create_network",
            "delete_network",
            "create_compartment",
            "delete_compartment",
            "create_endpoint",
            "set_ports",
            "delete_endpoint",
            "collect",
        }
    )

    def __init__(self, store: SqliteStore) -> None:
        self.commands = Commands(store)
        self.publication = Publication(self.commands.state)
        self.state = self.commands.state
        self.store = store

    def __getattr__(self, name: str) -> Any:
        if name in self.COMMANDS:
            command: Callable[..., Any] = getattr(self.commands, name)

            def run(*args: Any, **kw: Any) -> Done:
                out = command(*args, **kw)
                batch = self.publication.of(out.change)
                target = convergence.target_of(out.change, self.state)
                return Done(out.value, batch.publish, batch.snapshots, target)

            return run
        return getattr(self.publication, name)


def online(ctl: Controller, host: str, vtep: str = "198.18.0.1") -> list[Publish]:
    st = proto.HostStatus(host=host, state="online", version="t", vtep=vtep)
    return ctl.host_reported(st).publish


@pytest.fixture
def ctl(tmp_path: Path) -> Controller:
    c = Controller(SqliteStore(tmp_path / "plexus.db"))
    online(c, "h1", "198.18.0.1")
    online(c, "h2", "198.18.0.2")
    return c


def net(ctl: Controller, name: str = "blue", **kw: object) -> None:
    body = {"id": name, "subnet": "10.1.0.0/24", **kw}
    ctl.create_network(NetworkCreate.model_validate(body))


def comp(ctl: Controller, name: str, host: str) -> None:
    ctl.create_compartment(CompartmentCreate(id=name, host=host))


def ep(ctl: Controller, **kw: object) -> proto.EndpointRecord:
    out = ctl.create_endpoint(EndpointCreate.model_validate(kw))
    return ctl.record(out.value)


def decode_all(pubs: list[Publish]) -> list[proto.Wire | None]:
    return [proto.decode(p.payload) if p.payload else None for p in pubs]


def test_new_host_gets_an_empty_desired_document(tmp_path: Path) -> None:
    c = Controller(SqliteStore(tmp_path / "s.db"))
    pubs = online(c, "h9")
    assert [p.topic for p in pubs] == ["plexus/v1/hosts/h9/desired"]
    doc = proto.decode(pubs[0].payload, proto.HostDesired)
    assert doc.generation == 1 and doc.compartments == ()
    assert online(c, "h9") == []  # a repeated status publishes nothing


def test_network_defaults_and_validation(ctl: Controller) -> None:
    net(ctl)
    n = ctl.state.networks["blue"]
    assert (n.gateway, n.vni, n.spec.mtu) == ("10.1.0.1", 4096, 1450)
    net(ctl, "red")  # VNI allocated past the one in use
    assert ctl.state.networks["red"].vni == 4097
    with pytest.raises(Conflict, match="already exists"):
        net(ctl)
    with pytest.raises(Conflict, match="VNI 4096 is already used by network 'blue'"):
        net(ctl, "green", vni=4096)
    with pytest.raises(Invalid, match="outside"):
        net(ctl, "green", gateway="10.9.0.1")
    with pytest.raises(Invalid, match="no VNI"):
        net(ctl, "green", mode="nat", vni=5)
    net(ctl, "local", mode="nat", subnet="172.20.0.0/16")
    assert ctl.state.networks["local"].spec.mtu == 1500


def test_overlapping_subnets_are_allowed_on_different_vnis(ctl: Controller) -> None:
    net(ctl, "a", vni=10)
    net(ctl, "b", vni=11)
    assert ctl.state.networks["a"].subnet == ctl.state.networks["b"].subnet


def test_overlapping_networks_routed_by_the_host_never_share_a_host(ctl: Controller) -> None:
    """Two networks whose subnets overlap and are both routed in the host's namespace
    (a gateway on the bridge, a transparent uplink, an overlay's NAT exceptions): the
    endpoint that would put both on one host is a 409 naming the other network. On
    other hosts, or where one keeps its L3 out of the host (an overlay's router, a
    network without gateway), they coexist."""
    net(ctl, "n24", mode="nat", subnet="10.77.0.0/24")
    net(ctl, "n25", mode="nat", subnet="10.77.0.0/25")
    net(ctl, "ex", subnet="10.77.0.0/16", vni=77, outbound_nat=True, nat_exceptions=["10.0.0.0/8"])
    net(ctl, "ov", subnet="10.77.0.0/24", vni=78, outbound_nat=True)
    net(ctl, "l2", mode="internal", subnet="10.77.0.0/24")  # no gateway: no address
    for c, h in (("c1", "h1"), ("c2", "h1"), ("c3", "h1"), ("c4", "h2"), ("c5", "h1")):
        comp(ctl, c, h)
    ep(ctl, network="n24", compartment="c1")
    for network, c in (("n25", "c2"), ("ex", "c3")):
        with pytest.raises(Conflict, match=r"overlaps network 'n24' .* on host 'h1'"):
            ep(ctl, network=network, compartment=c)
        assert ctl.state.by_compartment.get(c, {}) == {}  # nothing was made
    assert ep(ctl, network="n25", compartment="c4").ip == "10.77.0.2"  # another host
    assert ep(ctl, network="l2", compartment="c5").ip == "10.77.0.1"
    assert ep(ctl, network="ov", compartment="c3").ip == "10.77.0.2"  # its own router
    # once the host holds no endpoint of n24 any more, n25 may come
    ctl.delete_endpoint(next(iter(ctl.state.by_compartment["c1"])))
    assert ep(ctl, network="n25", compartment="c2").ip == "10.77.0.2"


def test_overlay_routers_transit_addresses_are_unique(ctl: Controller) -> None:
    """An overlay's router address derives from its VNI: a VNI that would share it with
    another overlay's is a 409; allocated VNIs skip such VNIs."""
    net(ctl, "a", vni=5)
    with pytest.raises(Conflict, match=r"same router transit address .* network 'a'"):
        net(ctl, "b", subnet="10.2.0.0/24", vni=5 + transit.SLOTS)
    assert "b" not in ctl.state.networks
    net(ctl, "c", subnet="10.3.0.0/24", vni=4096 + transit.SLOTS)
    net(ctl, "d", subnet="10.4.0.0/24")  # allocation skips 4096: it would clash with c
    assert ctl.state.networks["d"].vni == 4097


def test_endpoint_allocation_and_static_checks(ctl: Controller) -> None:
    net(ctl)
    comp(ctl, "c1", "h1")
    comp(ctl, "c2", "h2")
    comp(ctl, "c3", "h2")
    r1 = ep(ctl, network="blue", compartment="c1")
    assert r1.ip == "10.1.0.2" and r1.vtep == "198.18.0.1"
    assert r1.mac.startswith("02:")
    r2 = ep(ctl, network="blue", compartment="c2", ip="10.1.0.50", mac="02:00:00:00:00:50")
    assert (r2.ip, r2.mac) == ("10.1.0.50", "02:00:00:00:00:50")
    with pytest.raises(Conflict, match="already has an endpoint in network"):
        ep(ctl, network="blue", compartment="c1")
    with pytest.raises(Conflict, match=r"address 10\.1\.0\.50 is already used"):
        ep(ctl, network="blue", compartment="c3", ip="10.1.0.50")
    with pytest.raises(Conflict, match="MAC 02:00:00:00:00:50 is already used"):
        ep(ctl, network="blue", compartment="c3", mac="02:00:00:00:00:50")
    for bad, why in [
        ("10.1.0.1", "gateway"),
        ("10.1.0.0", "network address"),
        ("10.1.0.255", "broadcast"),
        ("10.2.0.9", "outside"),
    ]:
        with pytest.raises(Invalid, match=why):
            ep(ctl, network="blue", compartment="c3", ip=bad)
    with pytest.raises(Invalid, match="network 'nope' does not exist"):
        ep(ctl, network="nope", compartment="c3")
    with pytest.raises(Invalid, match="compartment 'nope' does not exist"):
        ep(ctl, network="blue", compartment="nope")
    with pytest.raises(NotFound):
        ctl.delete_endpoint("nope")


def test_unknown_host_is_a_clear_error(ctl: Controller) -> None:
    with pytest.raises(Invalid, match="host 'h7' is not known"):
        comp(ctl, "c1", "h7")


def test_pool_exhaustion_is_a_conflict(ctl: Controller) -> None:
    net(ctl, "tiny", subnet="10.9.0.0/30")  # .1 gateway, .2 the only address
    comp(ctl, "c1", "h1")
    comp(ctl, "c2", "h1")
    ep(ctl, network="tiny", compartment="c1")
    with pytest.raises(Conflict, match="exhausted"):
        ep(ctl, network="tiny", compartment="c2")


def test_host_local_networks_have_a_pool_per_host(ctl: Controller) -> None:
    net(ctl, "nat", mode="nat", subnet="172.30.0.0/24")
    comp(ctl, "c1", "h1")
    comp(ctl, "c2", "h2")
    assert ep(ctl, network="nat", compartment="c1").ip == "172.30.0.2"
    assert ep(ctl, network="nat", compartment="c2").ip == "172.30.0.2"


def test_endpoint_change_is_o1_publishes(ctl: Controller) -> None:
    """One endpoint = the owner's desired document + one change on the network, in
    that order (the owner's agent reads its own endpoint first)."""
    net(ctl)
    comp(ctl, "c1", "h1")
    out = ctl.create_endpoint(EndpointCreate(network="blue", compartment="c1"))
    assert [p.topic for p in out.publish] == [
        "plexus/v1/hosts/h1/desired",
        "plexus/v1/networks/blue/changes",
    ]
    change = proto.decode(out.publish[1].payload, proto.NetworkChange)
    assert change.generation == ctl.state.networks["blue"].table_gen
    assert [r.id for r in change.upserts] == [out.value.id]
    assert out.publish[0].retain is True and out.publish[1].retain is False
    assert out.dirty == {"blue"}
    desired = proto.decode(out.publish[0].payload, proto.HostDesired)
    (c1,) = desired.compartments
    (local,) = c1.endpoints
    assert (local.index, local.prefixlen, local.default_route) == (0, 24, True)
    assert out.target["h1"].desired == desired.generation
    assert out.target["h1"].networks == {"blue": change.generation}


def test_generations_only_grow_even_across_delete_and_recreate(ctl: Controller) -> None:
    net(ctl)
    comp(ctl, "c1", "h1")
    e = ep(ctl, network="blue", compartment="c1")
    gen_before = ctl.state.networks["blue"].table_gen
    desired_before = ctl.state.hosts["h1"].desired_gen
    ctl.delete_network("blue", force=True)
    net(ctl)
    assert ctl.state.networks["blue"].table_gen > gen_before
    assert ctl.state.networks["blue"].generation > 1
    assert ctl.state.hosts["h1"].desired_gen > desired_before
    ctl.decommission_host("h2")
    online(ctl, "h2")
    assert e.id not in ctl.state.endpoints


def test_delete_refused_while_in_use_unless_forced(ctl: Controller) -> None:
    net(ctl)
    comp(ctl, "c1", "h1")
    ep(ctl, network="blue", compartment="c1", id="e1")
    with pytest.raises(Conflict, match="still has 1 endpoint"):
        ctl.delete_network("blue")
    with pytest.raises(Conflict, match="still has 1 endpoint"):
        ctl.delete_compartment("c1")
    with pytest.raises(Conflict, match="still has 1 compartment"):
        ctl.decommission_host("h1")
    out = ctl.delete_network("blue", force=True)
    topics_ = [p.topic for p in out.publish]
    assert "plexus/v1/hosts/h1/desired" in topics_
    assert ("plexus/v1/networks/blue", b"") in [(p.topic, p.payload) for p in out.publish]
    assert ("plexus/v1/networks/blue/snapshot/0", b"") in [
        (p.topic, p.payload) for p in out.publish
    ]
    assert "e1" not in ctl.state.endpoints and "blue" not in ctl.state.networks
    assert ctl.state.compartments["c1"]


def test_default_route_moves_to_the_next_endpoint(ctl: Controller) -> None:
    net(ctl, "a")
    net(ctl, "b", subnet="10.2.0.0/24")
    comp(ctl, "c1", "h1")
    ep(ctl, network="a", compartment="c1", id="ea")
    ep(ctl, network="b", compartment="c1", id="eb")
    assert ctl.state.endpoints["ea"].default_route
    assert not ctl.state.endpoints["eb"].default_route
    ep_b = ctl.state.endpoints["eb"]
    assert ep_b.index == 1
    ctl.delete_endpoint("ea")
    assert ctl.state.endpoints["eb"].default_route


def test_vtep_change_republishes_the_hosts_records(ctl: Controller) -> None:
    net(ctl)
    comp(ctl, "c1", "h1")
    ep(ctl, network="blue", compartment="c1", id="e1")
    out = ctl.host_reported(
        proto.HostStatus(host="h1", state="online", version="t", vtep="198.18.0.77")
    )
    (change,) = [m for m in decode_all(out.publish) if isinstance(m, proto.NetworkChange)]
    assert change.upserts[0].vtep == "198.18.0.77"
    assert ctl.record(ctl.state.endpoints["e1"]).vtep == "198.18.0.77"


def test_restart_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    c = Controller(SqliteStore(path))
    online(c, "h1")
    net(c)
    comp(c, "c1", "h1")
    e = ep(c, network="blue", compartment="c1")
    before = c.state
    c.store.close()
    c2 = Controller(SqliteStore(path))
    assert c2.state.endpoints == before.endpoints
    assert c2.state.networks == before.networks
    assert c2.state.compartments == before.compartments
    assert c2.state.hosts["h1"].desired_gen == before.hosts["h1"].desired_gen
    assert c2.state.hosts["h1"].state == "offline"  # until its status comes back
    assert c2.desired("h1") == c.desired("h1")
    # pools and MACs are rebuilt: the next address is not the one in use
    comp(c2, "c2", "h1")
    assert ep(c2, network="blue", compartment="c2").ip != e.ip


def test_the_desired_frame_built_from_cached_parts_is_the_document(ctl: Controller) -> None:
    """The controller assembles a host's desired frame from cached dumps of unchanged
    compartments; decoded, it is exactly the document built from the state, also
    after changes that invalidate some parts and not others."""
    ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/24", vni=100))
    ctl.create_network(NetworkCreate(id="web", mode="nat", subnet="10.5.0.0/24"))
    for i in range(4):
        ctl.create_compartment(CompartmentCreate(id=f"c{i}", host="h1"))
        ctl.create_endpoint(EndpointCreate(network="blue", compartment=f"c{i}"))

    def frame_is_document() -> None:
        lazy = ctl.desired_later("h1")
        assert lazy.lazy
        decoded = proto.decode(lazy.payload, proto.HostDesired)
        assert decoded == proto.HostDesired.model_validate(ctl.desired("h1").model_dump())

    frame_is_document()
    ep = ctl.create_endpoint(EndpointCreate(network="web", compartment="c2")).value
    frame_is_document()
    ctl.set_ports(ep.id, [PublishedPort(host_port=8080, port=80)])
    frame_is_document()
    ctl.delete_compartment("c1", force=True)
    frame_is_document()


def test_incremental_desired_documents_equal_ones_built_from_scratch(tmp_path: Path) -> None:
    """Random changes (compartments, endpoints in several networks, ports, forced
    deletes, a decommission); after each, every host's desired frame equals the one a
    fresh controller builds from the same store."""
    import random

    rng = random.Random(11)
    store = tmp_path / "plexus.db"
    c = Controller(SqliteStore(store))
    for h in ("h1", "h2", "h3"):
        online(c, h)
    net(c, "blue", vni=100)
    net(c, "web", mode="nat", subnet="10.5.0.0/24")
    for step in range(120):
        comps = sorted(c.state.compartments)
        eps = sorted(c.state.endpoints)
        op = rng.choice(["comp", "ep", "ep", "del_ep", "del_comp", "ports"])
        host = rng.choice(sorted(c.state.hosts))
        try:
            if op == "comp" or not comps:
                comp(c, f"k{step}", host)
            elif op == "ep":
                ep(c, network=rng.choice(["blue", "web"]), compartment=rng.choice(comps))
            elif op == "del_ep" and eps:
                c.delete_endpoint(rng.choice(eps))
            elif op == "del_comp":
                c.delete_compartment(rng.choice(comps), force=True)
            elif op == "ports" and eps:
                e = c.state.endpoints[rng.choice(eps)]
                if e.network == "web":
                    c.set_ports(e.id, [PublishedPort(host_port=1000 + step, port=80)])
        except (Conflict, Invalid):
            pass  # e.g. a second endpoint of one network in a compartment
        if step == 90:
            c.decommission_host("h3", force=True)
        for h in sorted(c.state.hosts):
            c.desired_publish(h)  # builds (and caches) the parts now
        fresh = Controller(SqliteStore(store))
        for h in sorted(c.state.hosts):
            assert c.desired_publish(h).payload == fresh.desired_publish(h).payload, (step, h)
        fresh.store.close()
