"""Handed-over compartments (Docker's libnetwork takes each interface from the host's
namespace): the controller carries the flag to the agent; the agent makes the pair with
the inner end bare in the host's namespace, and once the runtime took that end away it
keeps the host end and makes no second pair."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import proto
from agents import plan as p
from agents.desired import desired_state
from agents.model import HANDOVER, TAKEN, HostState
from controller.errors import Invalid
from controller.store import SqliteStore
from proto import names
from proto.rest import CompartmentCreate, EndpointCreate
from tests.unit.test_service import Controller, net, online


@pytest.fixture
def ctl(tmp_path: Path) -> Controller:
    c = Controller(SqliteStore(tmp_path / "plexus.db"))
    online(c, "h1", "198.18.0.1")
    net(c)
    return c


def handed(ctl: Controller) -> proto.HostDesired:
    ctl.create_compartment(CompartmentCreate(id="d1", host="h1", handover=True))
    ctl.create_endpoint(EndpointCreate(id="e1", network="blue", compartment="d1"))
    return ctl.desired("h1")


def test_the_flag_reaches_the_agent_and_names_no_netns(ctl: Controller) -> None:
    doc = handed(ctl)
    (comp,) = doc.compartments
    assert comp.handover and comp.netns is None
    assert proto.decode(proto.encode(doc)) == doc
    with pytest.raises(Invalid, match="names no netns"):
        ctl.create_compartment(
            CompartmentCreate.model_validate(
                {"host": "h1", "handover": True, "netns": {"path": "/proc/1/ns/net", "inode": 9}}
            )
        )


def test_the_inner_end_is_bare_in_the_hosts_namespace(ctl: Controller) -> None:
    st = desired_state("h1", handed(ctl), {}, vtep=None)
    veth = st.veths[names.veth("e1")]
    assert (veth.netns, veth.inner, veth.address) == (HANDOVER, names.handover("e1"), "")
    assert not st.namespaces and not st.runtime and HANDOVER not in st.routes
    plan = p.plan(st, HostState(), complete=True)
    assert p.AddVeth(veth) in plan
    assert not [a for a in plan if isinstance(a, p.SetRoute | p.AddNamespace)]


def test_taken_by_the_runtime_is_as_asked_and_a_stale_half_is_not(ctl: Controller) -> None:
    want = desired_state("h1", handed(ctl), {}, vtep=None)
    have = dataclasses.replace(want, veths=dict(want.veths))
    name = names.veth("e1")
    v = want.veths[name]
    have.veths[name] = dataclasses.replace(v, netns=TAKEN, inner="", mac="", mtu=0)
    assert not [a for a in p.plan(want, have, complete=True) if "Veth" in type(a).__name__]
    # a host end whose peer is gone (not taken) is re-made, and so is a taken one whose
    # host end is down
    for broken in (
        dataclasses.replace(v, netns="", inner="", mac="", mtu=0, up=False),
        dataclasses.replace(v, netns=TAKEN, inner="", mac="", mtu=0, up=False),
    ):
        have.veths[name] = broken
        assert p.plan(want, have, complete=True)[:2] == [p.DelVeth(name), p.AddVeth(v)]
    # not asked for any more: taken or not, the pair goes
    have.veths[name] = dataclasses.replace(v, netns=TAKEN)
    want.veths.clear()
    assert p.DelVeth(name) in p.plan(want, have, complete=True)
