"""Networks' snapshots as the controller publishes them (:mod:`proto.table`).

A network's table is split into shards that keep their records: a record stays in the
shard it was placed in until it is deleted, and a shard is published again only when a
change touched one of its records. After every refresh the index names, for each shard,
the generation it was last published at. A change then costs the broker the shards it
touched (at most :data:`SHARD_RECORDS` records each) and the index (a number a shard),
not the whole table: ARCHITECTURE.md's O(change) per change, which a refresh of every
shard after every change broke for large tables.

Placement fills the lowest shard with room, so that a burst of creates touches few
shards and deletes' holes are filled again; a table that shrank to a quarter of its
shards' room is laid out again (every shard published once). The controller learns
the layout of a broker's retained snapshot from its shards (:meth:`Snapshots.adopt`),
so that a restarted controller or a new leader goes on from it instead of publishing
every table again.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import proto
from proto import topics
from proto.rows import SnapshotRows
from proto.table import MAX_SHARDS

from .publish import Publish
from .state import EndpointRow, State

#: records per snapshot shard, at most (~80 bytes each: far below MAX_PAYLOAD)
SHARD_RECORDS = 2000


@dataclass
class Layout:
    """Which shard each record of one network's table is in, and the generation each
    shard was last published at."""

    #: names this placement on the wire (:class:`proto.SnapshotIndex`'s ``layout``)
    token: str
    members: list[set[str]] = field(default_factory=list)
    gens: list[int] = field(default_factory=list)
    where: dict[str, int] = field(default_factory=dict)
    #: shards a change touched since they were last published
    dirty: set[int] = field(default_factory=set)
    _room: int = 0  # no shard below this one has room

    @classmethod
    def of(cls, ids: list[str]) -> Layout:
        """A fresh layout of ``ids`` (sorted), every shard full but the last, all dirty."""
        count = max(1, -(-len(ids) // SHARD_RECORDS))
        members = [set(ids[i * SHARD_RECORDS : (i + 1) * SHARD_RECORDS]) for i in range(count)]
        where = {x: i for i, m in enumerate(members) for x in m}
        token = secrets.token_hex(4)
        return cls(token, members, [0] * count, where, set(range(count)), count - 1)

    @property
    def sparse(self) -> bool:
        """More than one shard, and the table fits in a quarter of their room."""
        return len(self.members) > 1 and 4 * len(self.where) <= len(self.members) * SHARD_RECORDS

    def touch(self, ident: str, present: bool) -> None:
        """Record ``ident`` written (``present``) or deleted, and mark its shard dirty."""
        at = self.where.get(ident)
        if present and at is None:
            at = self._place(ident)
        elif not present and at is not None:
            del self.where[ident]
            self.members[at].discard(ident)
            self._room = min(self._room, at)
        if at is not None:
            self.dirty.add(at)

    def _place(self, ident: str) -> int:
        at = self._room
        while at < len(self.members) and len(self.members[at]) >= SHARD_RECORDS:
            at += 1
        if at == len(self.members):
            if at == MAX_SHARDS:  # 2 million records: the fullest shard grows instead
                at = min(range(at), key=lambda i: len(self.members[i]))
            else:
                self.members.append(set())
                self.gens.append(0)
        self._room = at
        self.members[at].add(ident)
        self.where[ident] = at
        return at


class Snapshots:
    """Every network's layout and what the broker retains of its snapshot. Not
    thread-safe: call from one event loop."""

    def __init__(self, state: State, frame: Callable[[EndpointRow], bytes]) -> None:
        self.state = state
        self._frame = frame  # a record's cached encoding
        self.layouts: dict[str, Layout] = {}
        #: shards of each network's snapshot retained at the broker (cleared when fewer)
        self.retained: dict[str, int] = {}

    def touch(self, net_id: str, ident: str, present: bool) -> None:
        """An endpoint of ``net_id`` written (``present``) or deleted."""
        lay = self.layouts.get(net_id)
        if lay is not None:  # none: the next snapshot lays the table out afresh
            lay.touch(ident, present)

    def clear(self, net_id: str) -> list[Publish]:
        """Empty retained messages for a deleted network's snapshot."""
        self.layouts.pop(net_id, None)
        shards = range(self.retained.pop(net_id, 1))
        return [
            Publish(topics.network_snapshot_index(net_id), b"", True),
            *(Publish(topics.network_snapshot(net_id, i), b"", True) for i in shards),
        ]

    def publish(self, net_id: str) -> list[Publish]:
        """The shards changes touched (all of them for a table laid out afresh), the
        index, and empty retained messages for shards no longer used. Nothing for a
        network that is gone."""
        net = self.state.networks.get(net_id)
        if net is None:
            return []
        eps = self.state.by_network.get(net_id, {})
        lay = self.layouts.get(net_id)
        if lay is None or lay.sparse or len(lay.where) != len(eps):  # (the last: never)
            lay = self.layouts[net_id] = Layout.of(sorted(eps))
        gen, count = net.table_gen, len(lay.members)
        out = []
        for i in sorted(lay.dirty):
            head = proto.NetworkSnapshot(
                network=net_id, generation=gen, shard=i, shards=count, layout=lay.token
            )
            frames = [self._frame(eps[x]) for x in sorted(lay.members[i])]
            frame = proto.pack_parts(head.model_dump(mode="json"), {"records": frames})
            out.append(Publish(topics.network_snapshot(net_id, i), frame, True, generation=gen))
            lay.gens[i] = gen
        lay.dirty.clear()
        index = proto.SnapshotIndex(
            network=net_id, generation=gen, shards=tuple(lay.gens), layout=lay.token
        )
        topic = topics.network_snapshot_index(net_id)
        out.append(Publish(topic, proto.encode(index), True, generation=gen))
        for i in range(count, self.retained.get(net_id, count)):
            out.append(Publish(topics.network_snapshot(net_id, i), b"", True))
        self.retained[net_id] = count
        return out

    def adopt(self, net_id: str, held: Mapping[str, bytes]) -> bool:
        """Go on from the snapshot the broker retains (``held``: its retained messages
        under the network's snapshot topics) if it is the table as the store has it:
        an index at the table's generation, each shard as the index names it (its
        generation and layout), every record once at its generation, no other shard.
        Otherwise the next :meth:`publish` lays the table out afresh."""
        self.layouts.pop(net_id, None)
        shards = [int(t.rsplit("/", 1)[1]) for t, p in held.items() if p and "/index" not in t]
        self.retained[net_id] = max(shards, default=-1) + 1
        net = self.state.networks[net_id]
        index = _decoded(held.get(topics.network_snapshot_index(net_id)), proto.SnapshotIndex)
        if index is None or index.generation != net.table_gen:
            return False
        if len(shards) != len(index.shards) or self.retained[net_id] != len(shards):
            return False
        eps = self.state.by_network.get(net_id, {})
        lay = Layout(index.layout, [], list(index.shards))
        for i, gen in enumerate(index.shards):
            snap = _rows(held.get(topics.network_snapshot(net_id, i)))
            if snap is None or (snap.generation, snap.shard, snap.layout) != (gen, i, lay.token):
                return False
            ids = set()
            for r in snap.records:
                ep = eps.get(r.id)
                if ep is None or ep.gen != r.gen or r.id in lay.where:
                    return False
                lay.where[r.id] = i
                ids.add(r.id)
            lay.members.append(ids)
        if len(lay.where) != len(eps):
            return False
        self.layouts[net_id] = lay
        return True


def _decoded(payload: bytes | None, kind: type[proto.SnapshotIndex]) -> proto.SnapshotIndex | None:
    if not payload:
        return None
    with contextlib.suppress(proto.WireError):
        return proto.decode(payload, kind)
    return None


def _rows(payload: bytes | None) -> SnapshotRows | None:
    if not payload:
        return None
    with contextlib.suppress(proto.WireError):
        return proto.decode_rows(payload, proto.NetworkSnapshot)
    return None
