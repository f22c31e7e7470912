"""A network's endpoint table as a receiver keeps it: one tuple per record.

A host of a large overlay holds the whole tables of its networks: tens of thousands of
records. As :class:`~proto.table.EndpointRecord` models they cost ~1.4 KB each (a
model's ``__dict__`` and its set of fields set); as :class:`Row`\\ s ~0.3 KB with their
strings, hosts' ids and VTEP addresses shared. :func:`proto.codec.decode_rows` decodes
a snapshot or a change into :class:`SnapshotRows` or :class:`ChangeRows`: each record
is validated by the model as it is unpacked and kept as its row, so that a table's
models and unpacked maps are never all alive at once (what a process once held, it
mostly keeps: its peak, not the rows, would stay in its memory).

The rules over a table's records (their generations, an endpoint named once) are here,
for the models and the rows alike.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, overload

if TYPE_CHECKING:
    from .table import EndpointRecord, NetworkChange, NetworkSnapshot


class Row(NamedTuple):
    """An :class:`~proto.table.EndpointRecord`'s fields, validated by it."""

    id: str
    host: str
    mac: str
    ip: str
    vtep: str | None
    gen: int
    labels: tuple[str, ...] = ()


def row(record: EndpointRecord) -> Row:
    """The row of a record; its host and VTEP strings shared with every other row's."""
    vtep = record.vtep
    return Row(
        record.id,
        sys.intern(record.host),
        record.mac,
        record.ip,
        None if vtep is None else sys.intern(vtep),
        record.gen,
        record.labels,
    )


@dataclass(frozen=True, slots=True)
class SnapshotRows:
    """A :class:`~proto.table.NetworkSnapshot` with its records as rows."""

    network: str
    generation: int
    shard: int
    shards: int
    records: tuple[Row, ...]
    layout: str = ""


@dataclass(frozen=True, slots=True)
class ChangeRows:
    """A :class:`~proto.table.NetworkChange` with its upserts as rows."""

    network: str
    generation: int
    upserts: tuple[Row, ...]
    deletes: tuple[str, ...]


@overload
def of(message: NetworkSnapshot) -> SnapshotRows: ...
@overload
def of(message: NetworkChange) -> ChangeRows: ...
def of(message: NetworkSnapshot | NetworkChange) -> SnapshotRows | ChangeRows:
    """A snapshot or a change model (made in the process: tests, simulations) as rows."""
    if message.kind == "snapshot":
        records = tuple(map(row, message.records))
        return SnapshotRows(
            message.network,
            message.generation,
            message.shard,
            message.shards,
            records,
            message.layout,
        )
    upserts = tuple(map(row, message.upserts))
    return ChangeRows(message.network, message.generation, upserts, message.deletes)


class Versioned(Protocol):
    """A record as the rules read it: a model or a row."""

    @property
    def id(self) -> str: ...
    @property
    def gen(self) -> int: ...


def snapshot_records(generation: int, records: Iterable[Versioned]) -> None:
    """A snapshot at ``generation`` holds no newer record (ValueError)."""
    for r in records:
        if r.gen > generation:
            raise ValueError(f"record {r.id} at gen {r.gen} newer than the snapshot")


def change_records(generation: int, upserts: Iterable[Versioned], deletes: Iterable[str]) -> None:
    """The change to ``generation`` upserts records of that generation and names each
    endpoint once (ValueError)."""
    ids = list(deletes)
    for r in upserts:
        if r.gen != generation:
            raise ValueError(f"record {r.id} at gen {r.gen} in change {generation}")
        ids.append(r.id)
    if len(ids) != len(set(ids)):
        raise ValueError("an endpoint appears twice in one change")
