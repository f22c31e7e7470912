"""A network's endpoint table as an agent holds it: snapshot G + contiguous changes.

Complete means: a snapshot at G assembled (:mod:`proto.table`: the index at G and the
shards it names, or every shard of one layout at G), and every change since applied in
order. Older or duplicate records are ignored; a gap waits for the next snapshot (the
controller refreshes it shortly after every change).

A table keeps no record of what changed: it tells its ``changed`` callback (the
agent's :class:`~agents.desired.Changes`, the one owner of that) which records each
applied change touched, or that a snapshot replaced them all.

It holds its records as rows (:mod:`proto.rows`: tuples, not models), as
:func:`proto.decode_rows` decodes them: a host holds tens of thousands."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from proto.rows import ChangeRows, Row, SnapshotRows
from proto.table import SnapshotIndex

MAX_BUFFERED = 10_000
#: publications of each shard, and indexes, held while assembling (the newest)
MAX_ASSEMBLING = 4


#: told the network and the ids of the records a change touched (None: all of them, a
#: snapshot replaced the table)
Changed = Callable[[str, Collection[str] | None], None]


def _nobody(network: str, ids: Collection[str] | None) -> None:
    return None


@dataclass
class Table:
    network: str
    generation: int = 0
    complete: bool = False
    records: dict[str, Row] = field(default_factory=dict)
    changed: Changed = field(default=_nobody, repr=False, compare=False)
    #: a snapshot was published while the holder followed the changes, and nothing was
    #: missed since (see :attr:`synced`, :meth:`mark_verified`, :meth:`mark_unverified`)
    _verified: bool = False
    #: the snapshot's messages held while its topics are followed: shard → generation →
    #: the shard as published then (kept after a snapshot is applied: an index names
    #: the shards no change touched at the generation they were published at, which
    #: the broker sends once, when the topics are subscribed), and indexes by generation
    _parts: dict[int, dict[int, SnapshotRows]] = field(default_factory=dict)
    _indexes: dict[int, SnapshotIndex] = field(default_factory=dict)
    _pending: dict[int, ChangeRows] = field(default_factory=dict)

    @property
    def behind(self) -> bool:
        """Not complete, a gap in the changes, or part of a newer snapshot seen."""
        gen = self.generation
        return (
            not self.complete
            or bool(self._pending)
            or any(g > gen for g in self._indexes)
            or any(g > gen for held in self._parts.values() for g in held)
        )

    @property
    def synced(self) -> bool:
        """Complete and current as of a snapshot refresh published while the holder
        followed the changes: it then needs the changes only (the snapshot is
        refreshed after every change)."""
        return self._verified and not self.behind

    def mark_verified(self) -> None:
        """A snapshot was published while the holder followed the changes (a live one,
        not the retained copy sent at subscription time, which may predate a change
        published just before the subscription)."""
        self._verified = True

    def mark_unverified(self) -> None:
        """A change may have been missed (a new session, a message dropped, the
        snapshot topic subscribed again): the table is checked against a snapshot
        published from now on before it counts as :attr:`synced`."""
        self._verified = False

    def on_snapshot(self, snap: SnapshotRows) -> str:
        """A shard. Returns what happened: ``applied``, ``partial`` or ``stale``."""
        held = self._parts.setdefault(snap.shard, {})
        held[snap.generation] = snap
        while len(held) > MAX_ASSEMBLING:  # bounded: the oldest goes
            del held[min(held)]
        # held even when older than the table: a newer index may name it
        outcome = self._assemble()
        if outcome == "partial" and snap.generation <= self.generation and self.complete:
            return "stale"
        return outcome

    def on_index(self, index: SnapshotIndex) -> str:
        """The snapshot's index. Returns ``applied``, ``partial`` or ``stale``."""
        if index.generation <= self.generation and self.complete:
            return "stale"
        self._indexes[index.generation] = index
        while len(self._indexes) > MAX_ASSEMBLING:
            del self._indexes[min(self._indexes)]
        return self._assemble()

    def release(self) -> None:
        """The snapshot's topics are no longer followed: what was held of it goes."""
        self._parts.clear()
        self._indexes.clear()

    def _assemble(self) -> str:
        """Apply the newest snapshot newer than the table that is held whole."""
        floor = self.generation if self.complete else -1
        for gen in sorted((g for g in self._indexes if g > floor), reverse=True):
            index = self._indexes[gen]
            parts = [self._part(i, g, index.layout) for i, g in enumerate(index.shards)]
            if all(p is not None for p in parts):
                return self._apply(gen, parts)
        # no index: every shard of one layout at one generation
        for gen in sorted((g for g in self._parts.get(0, {}) if g > floor), reverse=True):
            first = self._parts[0][gen]
            parts = [self._part(i, gen, first.layout, first.shards) for i in range(first.shards)]
            if all(p is not None for p in parts):
                return self._apply(gen, parts)
        return "partial"

    def _part(
        self, shard: int, gen: int, layout: str, shards: int | None = None
    ) -> SnapshotRows | None:
        part = self._parts.get(shard, {}).get(gen)
        if part is None or part.layout != layout or shards not in (None, part.shards):
            return None
        return part

    def _apply(self, gen: int, parts: list[SnapshotRows | None]) -> str:
        self.records = {r.id: r for p in parts if p is not None for r in p.records}
        self.changed(self.network, None)
        self.generation = gen
        self.complete = True
        self._indexes = {g: i for g, i in self._indexes.items() if g > gen}
        self._drain()
        return "applied"

    def on_change(self, change: ChangeRows) -> str:
        """Returns ``applied``, ``duplicate`` or ``buffered`` (gap or not yet complete)."""
        if self.complete and change.generation <= self.generation:
            return "duplicate"
        if len(self._pending) < MAX_BUFFERED:
            self._pending[change.generation] = change
        if self.complete and change.generation == self.generation + 1:
            self._drain()
            return "applied"
        return "buffered"

    def _drain(self) -> None:
        for gen in sorted(g for g in self._pending if g <= self.generation):
            del self._pending[gen]
        while (change := self._pending.pop(self.generation + 1, None)) is not None:
            for r in change.upserts:
                self.records[r.id] = r
            for d in change.deletes:
                self.records.pop(d, None)
            self.changed(self.network, [*(r.id for r in change.upserts), *change.deletes])
            self.generation = change.generation
