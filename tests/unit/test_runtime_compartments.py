"""Runtime-owned compartments without a kernel: the controller admits them (one inode a
compartment per host, interface names unique), carries them to the agent, and collects
them when their agent finds the namespace gone; the agent plumbs into them without
ever making or deleting the namespace, and leaves out what a vanished one would need."""

from __future__ import annotations

from pathlib import Path

import pytest

import proto
from agents import plan as p
from agents.agent import Agent
from agents.kernel.memory import MemoryKernel
from agents.model import HostState
from controller.errors import Conflict
from controller.store import SqliteStore
from proto import names
from proto.parts import Netns
from proto.rest import CompartmentCreate, EndpointCreate
from tests.unit.test_service import Controller, net, online

NS = {"path": "/run/netns/cni-1", "inode": 4026532001, "container": "abc123"}


@pytest.fixture
def ctl(tmp_path: Path) -> Controller:
    c = Controller(SqliteStore(tmp_path / "plexus.db"))
    online(c, "h1", "198.18.0.1")
    online(c, "h2", "198.18.0.2")
    net(c)
    return c


def attach(ctl: Controller, comp: str, host: str = "h1", **ns: object) -> None:
    ctl.create_compartment(
        CompartmentCreate.model_validate({"id": comp, "host": host, "netns": {**NS, **ns}})
    )


def test_a_namespace_is_one_compartment_of_its_host(ctl: Controller) -> None:
    attach(ctl, "a")
    with pytest.raises(Conflict, match="already is namespace /run/netns/cni-1"):
        attach(ctl, "b")
    # the inode at another path: another namespace (inodes of freed ones are reused)
    attach(ctl, "b", path="/proc/42/ns/net")
    attach(ctl, "c", host="h2")  # another host's namespaces are others
    with pytest.raises(ValueError, match=r"'\.\.'"):
        CompartmentCreate.model_validate({"host": "h1", "netns": {**NS, "path": "/run/../etc"}})


def test_interface_names_are_unique_in_a_compartment(ctl: Controller) -> None:
    net(ctl, "red", subnet="10.2.0.0/24")
    net(ctl, "green", subnet="10.3.0.0/24")
    attach(ctl, "a")
    ctl.create_endpoint(EndpointCreate(network="blue", compartment="a", ifname="eth1"))
    with pytest.raises(Conflict, match="already has an interface 'eth1'"):
        ctl.create_endpoint(EndpointCreate(network="red", compartment="a", ifname="eth1"))
    # an endpoint without a name takes an index whose eth{index} no named one holds
    # (index 0 is eth1's, and eth1 is taken)
    out = ctl.create_endpoint(EndpointCreate(network="green", compartment="a"))
    assert (out.value.index, out.value.inner) == (2, "eth2")


def test_the_desired_document_names_the_namespace_and_the_interface(ctl: Controller) -> None:
    attach(ctl, "a")
    ctl.create_endpoint(EndpointCreate(id="e", network="blue", compartment="a", ifname="net0"))
    doc = ctl.desired("h1")
    (comp,) = doc.compartments
    assert comp.netns == proto.models.Netns(**NS)  # type: ignore[arg-type]
    assert comp.endpoints[0].inner == "net0"
    # through the wire and back, strictly validated
    again = proto.decode(proto.encode(doc))
    assert again == doc


def test_an_agent_made_compartment_encodes_as_before(ctl: Controller) -> None:
    """Fields added for runtimes are left out while unset: an agent of the previous
    build (which refuses unknown fields) still accepts every other document."""
    ctl.create_compartment(CompartmentCreate(id="own", host="h1"))
    ctl.create_endpoint(EndpointCreate(network="blue", compartment="own"))
    frame = proto.encode(ctl.desired("h1"))
    assert b"netns" not in frame and b"ifname" not in frame
    assert b"gone" not in proto.encode(proto.HostStatus(host="h1", state="online"))


def test_the_controller_collects_only_the_namespace_reported_gone(ctl: Controller) -> None:
    attach(ctl, "a")
    ctl.create_endpoint(EndpointCreate(id="e", network="blue", compartment="a"))
    this = Netns.model_validate(NS)
    # a report about an earlier namespace of that compartment (another inode or path):
    # kept, as is a report of another host's
    assert ctl.collect("h1", {"a": this.model_copy(update={"inode": 1})}).value == []
    assert ctl.collect("h1", {"a": this.model_copy(update={"path": "/proc/9/ns/net"})}).value == []
    assert ctl.collect("h2", {"a": this}).value == []
    done = ctl.collect("h1", {"a": this, "nothing": this})
    assert done.value == ["a"]
    assert "a" not in ctl.state.compartments and "e" not in ctl.state.endpoints
    # the other hosts learn the endpoint is gone
    changes = [m for m in map(proto.decode, (x.payload for x in done.publish if x.payload))]
    assert any(isinstance(m, proto.NetworkChange) and m.deletes == ("e",) for m in changes)


def doc_with_runtime(inode: int = 77) -> proto.HostDesired:
    net = proto.NetworkSpec(id="nat", mode="nat", subnet="10.9.0.0/24", gateway="10.9.0.1")
    ep = proto.LocalEndpoint(
        id="e",
        network="nat",
        index=0,
        mac="02:00:00:00:00:09",
        ip="10.9.0.2",
        prefixlen=24,
        default_route=True,
        ifname="eth0",
    )
    comp = proto.Compartment(
        id="c", endpoints=(ep,), netns={"path": "/run/netns/x", "inode": inode}
    )  # type: ignore[arg-type]
    return proto.HostDesired(host="h1", generation=1, networks=(net,), compartments=(comp,))


async def test_the_agent_plumbs_into_a_runtimes_namespace_but_never_owns_it() -> None:
    key = names.runtime_netns("/run/netns/x", 77)
    kernel = MemoryKernel(HostState(runtime={key}))  # the runtime made it
    agent = Agent("h1", kernel, vtep=None)
    agent.doc = doc_with_runtime()
    result = await agent.reconcile()
    assert result.errors == [] and agent.status().gone == {}
    actions = list(kernel.applied)
    assert not any(isinstance(a, p.AddNamespace | p.DelNamespace) for a in actions)
    (veth,) = kernel.state.veths.values()
    assert (veth.netns, veth.inner) == (key, "eth0")
    assert kernel.state.routes[key] == "10.9.0.1"
    assert (await agent.reconcile()).actions == 0  # converged

    # deleted from the desired state: its interface goes, the namespace stays
    agent.doc = proto.HostDesired(host="h1", generation=2, networks=agent.doc.networks)
    await agent.reconcile()
    assert kernel.state.veths == {} and kernel.state.runtime == {key}


async def test_a_vanished_namespace_is_reported_not_plumbed() -> None:
    kernel = MemoryKernel()  # the namespace is gone (or another inode holds the path)
    agent = Agent("h1", kernel, vtep=None)
    agent.doc = doc_with_runtime()
    result = await agent.reconcile()
    assert kernel.state.veths == {}
    assert agent.status().gone == {"c": Netns(path="/run/netns/x", inode=77)}
    assert any("namespace /run/netns/x (inode 77) is gone" in e for e in result.errors)
    assert agent.applied_desired == 0  # not in sync with a document it cannot apply
