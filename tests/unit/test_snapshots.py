"""A network's snapshot as the controller publishes it (:mod:`controller.snapshots`):
shards that keep their records, only the shards a change touched published again, the
index naming each shard's publication, and a layout adopted from the broker's retained
copy. Shards of two records here, so that a handful of endpoints make several."""

from __future__ import annotations

from pathlib import Path

import pytest

import proto
from agents.tables import Table
from controller import snapshots
from controller.publish import Publish
from controller.store import SqliteStore
from proto import rows, topics
from tests.unit.test_service import Controller, comp, ep, net, online


@pytest.fixture
def ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Controller:
    monkeypatch.setattr(snapshots, "SHARD_RECORDS", 2)
    c = Controller(SqliteStore(tmp_path / "plexus.db"))
    online(c, "h1", "198.18.0.1")
    net(c)
    return c


def add(ctl: Controller, *names: str) -> None:
    for name in names:
        comp(ctl, f"c-{name}", "h1")
        ep(ctl, id=name, network="blue", compartment=f"c-{name}")


def published(pubs: list[Publish]) -> dict[str, proto.Wire | None]:
    """What a refresh publishes: shard number or ``index`` → the message (None: cleared)."""
    return {p.topic.rsplit("/", 1)[1]: proto.decode(p.payload) if p.payload else None for p in pubs}


def shard_ids(msg: proto.Wire | None) -> list[str]:
    assert isinstance(msg, proto.NetworkSnapshot)
    return [r.id for r in msg.records]


def assemble(*refreshes: list[Publish]) -> Table:
    """A receiver's table from the refreshes, in order, as an agent reads them."""
    table = Table("blue")
    for pubs in refreshes:
        for p in pubs:
            msg = proto.decode(p.payload) if p.payload else None
            if isinstance(msg, proto.NetworkSnapshot):
                table.on_snapshot(rows.of(msg))
            elif isinstance(msg, proto.SnapshotIndex):
                table.on_index(msg)
    return table


def test_a_change_publishes_the_shard_it_touched_and_the_index(ctl: Controller) -> None:
    add(ctl, "e1", "e2", "e3", "e4", "e5")
    first = ctl.snapshot("blue")
    out = published(first)
    assert list(out) == ["0", "1", "2", "index"]
    assert [shard_ids(out[s]) for s in "012"] == [["e1", "e2"], ["e3", "e4"], ["e5"]]
    index = out["index"]
    assert isinstance(index, proto.SnapshotIndex)
    gen = ctl.state.networks["blue"].table_gen
    assert index.generation == gen and index.shards == (gen, gen, gen)
    # assembled from cached record encodings: the bytes of a shard built from scratch
    shard = out["1"]
    assert isinstance(shard, proto.NetworkSnapshot)
    fresh = shard.model_copy(
        update={"records": tuple(ctl.record(ctl.state.endpoints[i]) for i in ("e3", "e4"))}
    )
    assert first[1].payload == proto.encode(fresh)

    ctl.delete_endpoint("e3")
    second = published(ctl.snapshot("blue"))
    assert list(second) == ["1", "index"] and shard_ids(second["1"]) == ["e4"]
    index = second["index"]
    assert isinstance(index, proto.SnapshotIndex)
    assert index.shards == (gen, gen + 1, gen) and index.generation == gen + 1

    add(ctl, "e6")  # fills the hole deletes left, in the lowest shard with room
    third = published(ctl.snapshot("blue"))
    assert list(third) == ["1", "index"] and shard_ids(third["1"]) == ["e4", "e6"]
    add(ctl, "e7")
    assert list(published(ctl.snapshot("blue"))) == ["2", "index"]
    add(ctl, "e8")  # every shard full: a new one
    out = published(ctl.snapshot("blue"))
    assert list(out) == ["3", "index"] and shard_ids(out["3"]) == ["e8"]
    assert list(published(ctl.snapshot("blue"))) == ["index"]  # nothing touched


def test_a_receiver_assembles_the_table_from_shards_of_different_generations(
    ctl: Controller,
) -> None:
    add(ctl, "e1", "e2", "e3", "e4", "e5")
    first = ctl.snapshot("blue")
    ctl.delete_endpoint("e1")
    add(ctl, "e8")
    second = ctl.snapshot("blue")
    table = assemble(first, second)
    assert table.complete and table.generation == ctl.state.networks["blue"].table_gen
    assert sorted(table.records) == ["e2", "e3", "e4", "e5", "e8"]
    # what the broker retains (the newest publication of each topic) is the same table
    retained = {p.topic: p for p in [*first, *second]}
    assert assemble(list(retained.values())).records == table.records
    # the index alone, or the shards alone, are not
    assert not assemble(second[:-1]).complete and not assemble(second[-1:]).complete


def test_a_shrunk_table_is_laid_out_again_and_old_shards_cleared(ctl: Controller) -> None:
    add(ctl, "e1", "e2", "e3", "e4", "e5")
    first = ctl.snapshot("blue")
    for name in ("e1", "e2", "e3", "e4"):
        ctl.delete_endpoint(name)
    again = ctl.snapshot("blue")
    out = published(again)
    assert list(out) == ["0", "index", "1", "2"] and out["1"] is None and out["2"] is None
    assert shard_ids(out["0"]) == ["e5"]
    old, new = out["index"], published(first)["index"]
    assert isinstance(old, proto.SnapshotIndex) and isinstance(new, proto.SnapshotIndex)
    assert old.layout != new.layout  # a receiver never mixes the two placements
    assert sorted(assemble(first, again).records) == ["e5"]


def test_a_deleted_network_clears_its_index_and_every_shard(ctl: Controller) -> None:
    add(ctl, "e1", "e2", "e3")
    ctl.snapshot("blue")
    for name in ("e1", "e2", "e3"):
        ctl.delete_compartment(f"c-{name}", force=True)
    done = ctl.delete_network("blue")
    cleared = [p.topic for p in done.publish if not p.payload and "/snapshot/" in p.topic]
    assert cleared == [
        topics.network_snapshot_index("blue"),
        topics.network_snapshot("blue", 0),
        topics.network_snapshot("blue", 1),
    ]
    assert ctl.snapshot("blue") == []


def test_a_restarted_controller_adopts_the_retained_snapshot(
    ctl: Controller, tmp_path: Path
) -> None:
    add(ctl, "e1", "e2", "e3", "e4", "e5")
    retained = {p.topic: p.payload for p in ctl.snapshot("blue")}
    ctl.delete_endpoint("e2")
    retained.update({p.topic: p.payload for p in ctl.snapshot("blue")})
    ctl.store.close()
    again = Controller(SqliteStore(tmp_path / "plexus.db"))
    assert [p.topic for p in again.reconcile(retained) if "/snapshot/" in p.topic] == []
    add(again, "e9")  # goes on from the adopted layout: e2's hole, shard 0
    refresh = again.snapshot("blue")
    out = published(refresh)
    assert list(out) == ["0", "index"] and shard_ids(out["0"]) == ["e1", "e9"]
    held = [Publish(t, p, True) for t, p in retained.items()]
    assert sorted(assemble(held, refresh).records) == ["e1", "e3", "e4", "e5", "e9"]


@pytest.mark.parametrize(
    "spoil",
    [
        "no_index",
        "index_behind",
        "shard_behind",
        "shard_missing",
        "extra_shard",
        "record_gone",
        "other_layout",
    ],
)
def test_a_retained_snapshot_that_is_not_the_table_is_published_again(
    ctl: Controller, tmp_path: Path, spoil: str
) -> None:
    add(ctl, "e1", "e2", "e3")
    pubs = ctl.snapshot("blue")
    retained = {p.topic: p.payload for p in pubs}
    index_topic, shard1 = topics.network_snapshot_index("blue"), topics.network_snapshot("blue", 1)
    index = proto.decode(retained[index_topic], proto.SnapshotIndex)
    shard = proto.decode(retained[shard1], proto.NetworkSnapshot)
    if spoil == "no_index":
        del retained[index_topic]
    elif spoil == "index_behind":
        retained[index_topic] = proto.encode(
            index.model_copy(update={"generation": index.generation - 1, "shards": (1, 1)})
        )
    elif spoil == "shard_behind":
        retained[shard1] = proto.encode(shard.model_copy(update={"generation": 1, "records": ()}))
    elif spoil == "shard_missing":
        del retained[shard1]
    elif spoil == "extra_shard":
        retained[topics.network_snapshot("blue", 2)] = proto.encode(
            shard.model_copy(update={"shard": 2, "shards": 3})
        )
    elif spoil == "record_gone":
        ctl.delete_endpoint("e3")  # after the snapshot: the store moved on, the index too
        retained[index_topic] = proto.encode(
            index.model_copy(update={"generation": ctl.state.networks["blue"].table_gen})
        )
    elif spoil == "other_layout":
        retained[shard1] = proto.encode(shard.model_copy(update={"layout": "0123abcd"}))
    ctl.store.close()
    again = Controller(SqliteStore(tmp_path / "plexus.db"))
    out = again.reconcile(retained)
    table = assemble(out)
    assert table.complete
    assert sorted(table.records) == sorted(again.state.by_network["blue"])
    cleared = {p.topic for p in out if not p.payload}
    left = {"extra_shard": 2, "record_gone": 1}  # two records left need one shard
    assert cleared == ({topics.network_snapshot("blue", left[spoil])} if spoil in left else set())


def test_a_receiver_never_mixes_layouts_and_keeps_shards_an_index_may_name() -> None:
    rec = lambda i, g: proto.EndpointRecord(  # noqa: E731
        id=f"e{i}", host="h2", mac=f"02:00:00:00:00:{i:02x}", ip=f"10.1.0.{i}", gen=g
    )

    def shard(i: int, gen: int, layout: str, *records: proto.EndpointRecord) -> rows.SnapshotRows:
        msg = proto.NetworkSnapshot(
            network="blue", generation=gen, shard=i, shards=2, layout=layout, records=records
        )
        return rows.of(msg)

    def index(gen: int, layout: str, *shards: int) -> proto.SnapshotIndex:
        return proto.SnapshotIndex(network="blue", generation=gen, shards=shards, layout=layout)

    t = Table("blue")
    assert t.on_snapshot(shard(0, 5, "aa", rec(1, 5))) == "partial"
    assert t.on_snapshot(shard(1, 3, "bb", rec(2, 3))) == "partial"
    assert t.on_index(index(5, "aa", 5, 3)) == "partial"  # shard 1 of another layout
    assert t.on_snapshot(shard(1, 3, "aa", rec(3, 3))) == "applied"
    assert t.generation == 5 and sorted(t.records) == ["e1", "e3"]
    # a gap; the next index names shard 1 as held already, at a generation older than
    # the table's: it was kept
    assert t.on_snapshot(shard(0, 9, "aa", rec(4, 9))) == "partial"
    assert t.behind
    assert t.on_index(index(9, "aa", 9, 3)) == "applied"
    assert t.generation == 9 and sorted(t.records) == ["e3", "e4"]
    assert t.on_index(index(9, "aa", 9, 3)) == "stale"
    assert t.on_snapshot(shard(1, 3, "aa", rec(3, 3))) == "stale"
    t.release()  # the topics left: nothing of the snapshot is held
    assert not t.behind and t.on_index(index(10, "aa", 10, 3)) == "partial"
