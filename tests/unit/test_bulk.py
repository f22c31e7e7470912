"""``POST /v1/batch``'s logic (:mod:`controller.bulk`) with a real SQLite store: one
commit, generations as one change makes them, the agent's table following the
published changes without a gap, and all or nothing — a refused batch, or a store that
refuses the commit, leaves the state and the store as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import proto
from agents.tables import Table
from controller import bulk, convergence, publication
from controller.errors import StoreError
from controller.publication import Publication
from controller.service import Controller
from controller.state import Delta, State
from controller.store import SqliteStore
from proto.rest import BatchOp, CompartmentCreate, EndpointCreate, NetworkCreate


class CountingStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits = 0
        self.fail = False

    def apply(self, delta: Delta) -> None:
        if self.fail:
            raise StoreError("store write failed: disk I/O error")
        self.commits += 1
        super().apply(delta)


@pytest.fixture
def ctl(tmp_path: Path) -> Controller:
    c = Controller(CountingStore(tmp_path / "plexus.db"))
    for i, host in enumerate(("h1", "h2")):
        c.host_reported(
            proto.HostStatus(host=host, state="online", version="t", vtep=f"198.18.0.{i + 1}")
        )
    return c


def store(ctl: Controller) -> CountingStore:
    assert isinstance(ctl.store, CountingStore)
    return ctl.store


def create(kind: str, **body: Any) -> BatchOp:
    return BatchOp(op="create", kind=kind, body=body)  # type: ignore[arg-type]


def delete(kind: str, ident: str, force: bool = False) -> BatchOp:
    return BatchOp(op="delete", kind=kind, id=ident, force=force)  # type: ignore[arg-type]


def fingerprint(state: State) -> dict[str, Any]:
    """Every row and every index derived from them."""
    return {
        "rows": {
            t: dict(getattr(state, t))
            for t in ("hosts", "networks", "compartments", "endpoints", "policies")
        },
        "floors": dict(state.floors),
        "vnis": dict(state.vnis),
        "by_network": {k: dict(v) for k, v in state.by_network.items() if v},
        "by_compartment": {k: dict(v) for k, v in state.by_compartment.items() if v},
        "comps_by_host": {k: dict(v) for k, v in state.comps_by_host.items() if v},
        "macs": {k: set(v) for k, v in state.macs.items() if v},
        "host_networks": {k: dict(v) for k, v in state.host_networks.items() if v},
        "pools": {k: set(p._used) for k, p in state._pools.items() if p._used},
    }


def reloaded(ctl: Controller) -> dict[str, Any]:
    again = Controller(SqliteStore(store(ctl).path))
    fp = fingerprint(again.state)
    # runtime fields of hosts come back with their statuses, not from the store
    fp["rows"]["hosts"] = {h: r.desired_gen for h, r in fp["rows"]["hosts"].items()}
    return fp


def persisted(ctl: Controller) -> dict[str, Any]:
    fp = fingerprint(ctl.state)
    fp["rows"]["hosts"] = {h: r.desired_gen for h, r in fp["rows"]["hosts"].items()}
    return fp


def setup_blue(ctl: Controller, endpoints: int = 0) -> None:
    ctl.create_network(NetworkCreate(id="blue", subnet="10.1.0.0/16"))  # type: ignore[call-arg]
    for i in range(endpoints):
        ctl.create_compartment(CompartmentCreate(id=f"old{i}", host="h1"))  # type: ignore[call-arg]
        ctl.create_endpoint(
            EndpointCreate(id=f"e-old{i}", network="blue", compartment=f"old{i}")  # type: ignore[call-arg]
        )


def test_a_new_network_with_its_compartments_and_endpoints_is_one_commit(
    ctl: Controller,
) -> None:
    pub = Publication(ctl.state)
    before = store(ctl).commits
    desired = {h: r.desired_gen for h, r in ctl.state.hosts.items()}
    ops = [create("network", id="blue", subnet="10.1.0.0/24")]
    for i in range(6):
        ops.append(create("compartment", id=f"c{i}", host=f"h{i % 2 + 1}"))
        ops.append(create("endpoint", id=f"e{i}", network="blue", compartment=f"c{i}"))
    rule = {"priority": 10, "direction": "in", "action": "allow"}
    ops.append(create("policy", id="p1", network="blue", rules=[rule]))
    out = bulk.run(ctl, ops)
    assert out.value[-1].kind == "policy" and out.value[-1].row is ctl.state.policies["p1"]
    out.value.pop()
    assert store(ctl).commits == before + 1
    assert [d.id for d in out.value] == ["blue"] + [x for i in range(6) for x in (f"c{i}", f"e{i}")]
    assert pub.desired("h2").policies[0].id == "p1"
    net = ctl.state.networks["blue"]
    assert net.table_gen == net.spec.generation == 1
    assert {e.gen for e in ctl.state.endpoints.values()} == {1}
    assert {h: r.desired_gen for h, r in ctl.state.hosts.items()} == {
        h: g + 1 for h, g in desired.items()
    }
    publishes = pub.of(out.change).publish
    kinds = [proto.topics.parse(p.topic).kind for p in publishes]
    assert kinds == [
        "network",
        "network_snapshot",
        "network_snapshot_index",
        "host_desired",
        "host_desired",
    ]
    snap = proto.decode_rows(publishes[1].payload, proto.NetworkSnapshot)
    assert sorted(r.id for r in snap.records) == [f"e{i}" for i in range(6)]
    doc = pub.desired("h1")
    assert [c.id for c in doc.compartments] == ["c0", "c2", "c4"]
    target = convergence.target_of(out.change, ctl.state)
    assert {h: t.desired for h, t in target.items()} == {h: g + 1 for h, g in desired.items()}
    assert reloaded(ctl) == persisted(ctl)


def test_changes_of_an_existing_network_are_chunked_and_followed_without_a_gap(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 deletes and 4 creates, 2 records a change: 4 changes, deletes first; an agent's
    table, complete at the generation before, applies each in turn."""
    monkeypatch.setattr(publication, "CHANGE_RECORDS", 2)
    setup_blue(ctl, endpoints=4)
    pub = Publication(ctl.state)
    table = Table("blue")
    snap = proto.decode_rows(pub.snapshot("blue")[0].payload, proto.NetworkSnapshot)
    assert table.on_snapshot(snap) == "applied"
    g = ctl.state.networks["blue"].table_gen
    ops = [delete("endpoint", f"e-old{i}") for i in range(3)]
    for i in range(4):
        ops.append(create("compartment", id=f"n{i}", host="h2"))
        ops.append(create("endpoint", id=f"e-new{i}", network="blue", compartment=f"n{i}"))
    out = bulk.run(ctl, ops)
    assert ctl.state.networks["blue"].table_gen == g + 4
    assert [ctl.state.endpoints[f"e-new{i}"].gen for i in range(4)] == [g + 2, g + 3, g + 3, g + 4]
    changes = [
        proto.decode_rows(p.payload, proto.NetworkChange)
        for p in pub.of(out.change).publish
        if proto.topics.parse(p.topic).kind == "network_changes"
    ]
    assert [c.generation for c in changes] == [g + 1, g + 2, g + 3, g + 4]
    assert [(len(c.deletes), len(c.upserts)) for c in changes] == [(2, 0), (1, 1), (0, 2), (0, 1)]
    assert [table.on_change(c) for c in changes] == ["applied"] * 4
    assert not table.behind and table.generation == g + 4
    assert sorted(table.records) == ["e-new0", "e-new1", "e-new2", "e-new3", "e-old3"]
    target = convergence.target_of(out.change, ctl.state)
    assert target["h1"].networks == {"blue": g + 4}
    assert reloaded(ctl) == persisted(ctl)


def test_a_refused_batch_changes_nothing_and_names_each_refused_operation(
    ctl: Controller,
) -> None:
    setup_blue(ctl, endpoints=2)
    before, commits = fingerprint(ctl.state), store(ctl).commits
    ops = [
        create("compartment", id="x1", host="h2"),
        create("endpoint", id="y1", network="blue", compartment="x1", ip="10.1.0.9"),
        create("compartment", id="x2", host="h2"),
        create("endpoint", network="blue", compartment="x2", ip="10.1.0.9"),  # taken by y1
        create("endpoint", network="blue", compartment="nowhere"),
        create("endpoint", network="blue", compartment="x2", ip="10.9.9.9"),  # outside
        delete("compartment", "old0"),  # still has an endpoint
        create("endpoint", network="blue", compartment="x2", mac="zz"),  # body invalid
        delete("endpoint", "e-old1"),
    ]
    with pytest.raises(bulk.Refused) as caught:
        bulk.run(ctl, ops)
    err = caught.value
    assert [(i, e.error) for i, e in err.items] == [
        (3, "conflict"),
        (4, "invalid"),
        (5, "invalid"),
        (6, "conflict"),
        (7, "invalid"),
    ]
    assert err.status == 409 and err.reason.startswith("ops[3]: address 10.1.0.9 is already")
    assert "endpoint body: mac" in err.items[4][1].reason
    assert fingerprint(ctl.state) == before
    assert store(ctl).commits == commits
    assert not ctl.staging
    # and the same batch without its refused operations goes through
    out = bulk.run(ctl, [op for i, op in enumerate(ops) if i not in (3, 4, 5, 6, 7)])
    assert [d.id for d in out.value] == ["x1", "y1", "x2", "e-old1"]


def test_a_store_that_refuses_the_commit_leaves_the_state_as_it_was(ctl: Controller) -> None:
    setup_blue(ctl, endpoints=3)
    ctl.create_network(NetworkCreate(id="gone", subnet="10.7.0.0/24"))  # type: ignore[call-arg]
    before = fingerprint(ctl.state)
    store(ctl).fail = True
    ops = [
        delete("network", "blue", force=True),
        create("network", id="blue", subnet="10.2.0.0/24", vni=77),
        delete("network", "gone"),
        create("compartment", id="z", host="h1"),
        create("endpoint", id="z-ep", network="blue", compartment="z"),
    ]
    with pytest.raises(StoreError):
        bulk.run(ctl, ops)
    assert fingerprint(ctl.state) == before
    store(ctl).fail = False
    bulk.run(ctl, ops)
    assert ctl.state.networks["blue"].vni == 77 and "gone" not in ctl.state.networks
    assert ctl.state.endpoints["z-ep"].ip == "10.2.0.2"
    assert reloaded(ctl) == persisted(ctl)


def test_an_address_freed_earlier_in_the_batch_is_taken_later_in_it(ctl: Controller) -> None:
    setup_blue(ctl, endpoints=1)
    ip = ctl.state.endpoints["e-old0"].ip
    ops = [
        delete("endpoint", "e-old0"),
        create("compartment", id="k", host="h2"),
        create("endpoint", id="k-ep", network="blue", compartment="k", ip=ip),
        create("compartment", id="tmp", host="h2"),  # made and deleted: nothing of it stays
        delete("compartment", "tmp"),
    ]
    out = bulk.run(ctl, ops)
    assert ctl.state.endpoints["k-ep"].ip == ip and "tmp" not in ctl.state.compartments
    assert out.value[3].row is None  # the create's row: deleted by a later operation
    assert out.change.compartments.get("tmp", (None, None)) == (None, None)
    assert reloaded(ctl) == persisted(ctl)
