"""A network's endpoint table as an agent holds it: snapshot G + contiguous changes.

Complete means: every shard of one snapshot generation held, and every change since
applied in order. Older or duplicate records are ignored; a gap waits for the next
snapshot (the controller refreshes it shortly after every change).

A table keeps no record of what changed: it tells its ``changed`` callback (the
agent's :class:`~agents.desired.Changes`, the one owner of that) which records each
applied change touched, or that a snapshot replaced them all.

It holds its records as rows (:mod:`proto.rows`: tuples, not models), as
:func:`proto.decode_rows` decodes them: a host holds tens of thousands."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from proto.rows import ChangeRows, Row, SnapshotRows

MAX_BUFFERED = 10_000
#: snapshot generations assembled at once (a newer one supersedes the older)
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
    _shards: dict[int, dict[int, SnapshotRows]] = field(default_factory=dict)
    _pending: dict[int, ChangeRows] = field(default_factory=dict)

    @property
    def behind(self) -> bool:
        """Not complete, a gap in the changes, or part of a newer snapshot seen."""
        return (
            not self.complete
            or bool(self._pending)
            or any(g > self.generation for g in self._shards)
        )

    @property
    def synced(self) -> bool:
        """Complete and current as of a snapshot refresh published while the holder
        followed the changes: it then needs the changes only (the snapshot is
        refreshed after every change, and it is the whole table)."""
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
        """Returns what happened: ``applied``, ``partial`` or ``stale``."""
        if snap.generation <= self.generation and self.complete:
            return "stale"
        shards = self._shards.setdefault(snap.generation, {})
        shards[snap.shard] = snap
        while len(self._shards) > MAX_ASSEMBLING:  # bounded: drop the oldest partial one
            del self._shards[min(self._shards)]
        if snap.generation not in self._shards:
            return "partial"
        if any(s.shards != snap.shards for s in shards.values()) or len(shards) < snap.shards:
            return "partial"
        self.records = {r.id: r for s in shards.values() for r in s.records}
        self.changed(self.network, None)
        self.generation = snap.generation
        self.complete = True
        self._shards = {g: s for g, s in self._shards.items() if g > snap.generation}
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
