"""A network's endpoint table on the wire: its records, its snapshot (shards and their
index) and its changes.

The snapshot is split into shards by a stable assignment of records (the controller's
choice: a receiver only takes the union), and a shard is published again only when a
change touched one of its records. The index says which publication of each shard makes
up the table at its generation. A table is complete at G when either

- the index at G is held, and every shard i as published at the index's generation for
  it, in the index's layout; or
- every shard 0..n-1 of one layout of n shards is held at G itself (a controller that
  publishes no index refreshes every shard after each change).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .policy import Labels
from .rows import change_records, snapshot_records
from .types import Generation, Id, IPv4, Mac
from .wire import Wire, empty

MAX_SHARDS = 1024
MAX_RECORDS = 10_000  # per snapshot shard or change


class EndpointRecord(Wire):
    """One row of a network's endpoint table: what a peer needs to reach it."""

    kind: Literal["endpoint"] = "endpoint"
    id: Id
    host: Id
    mac: Mac
    ip: IPv4
    vtep: IPv4 | None = None
    gen: Generation
    #: the endpoint's labels: peers resolve policy selectors with them
    labels: Labels = Field((), exclude_if=empty)


#: which placement of records a shard belongs to: the index and its shards name the same
#: one (a controller that lays a table out afresh picks a new one); left out while empty
Layout = Annotated[str, Field(max_length=16, pattern=r"^[0-9a-f]*$")]
Records = Annotated[tuple[EndpointRecord, ...], Field(max_length=MAX_RECORDS)]


class NetworkSnapshot(Wire):
    """Shard ``shard`` of ``shards`` of a network's endpoint table: its records as they
    are at table generation ``generation`` (see the module's docstring for when the
    table is complete)."""

    kind: Literal["snapshot"] = "snapshot"
    network: Id
    generation: Generation
    shard: Annotated[int, Field(ge=0, lt=MAX_SHARDS)] = 0
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 1
    layout: Layout = Field("", exclude_if=empty)
    records: Records = ()

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSnapshot:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} out of range for {self.shards} shards")
        snapshot_records(self.generation, self.records)
        return self


class SnapshotIndex(Wire):
    """A network's endpoint table at ``generation`` as shards: shard i as published at
    generation ``shards[i]``, which no change has touched since."""

    kind: Literal["snapshot_index"] = "snapshot_index"
    network: Id
    generation: Generation
    shards: Annotated[tuple[Generation, ...], Field(min_length=1, max_length=MAX_SHARDS)]
    layout: Layout = Field("", exclude_if=empty)

    @model_validator(mode="after")
    def _consistent(self) -> SnapshotIndex:
        for i, gen in enumerate(self.shards):
            if gen > self.generation:
                raise ValueError(f"shard {i} at gen {gen} newer than the index")
        return self


class NetworkChange(Wire):
    """The change that takes a network's table from ``generation - 1`` to ``generation``."""

    kind: Literal["change"] = "change"
    network: Id
    generation: Annotated[int, Field(ge=1, le=2**63 - 1)]
    upserts: Records = ()
    deletes: Annotated[tuple[Id, ...], Field(max_length=MAX_RECORDS)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> NetworkChange:
        change_records(self.generation, self.upserts, self.deletes)
        return self
